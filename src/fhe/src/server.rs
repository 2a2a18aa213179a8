//! The keyhost's side: the analyst's server key and the evaluation of a circuit over rows.
//!
//! Per row: decompress the row's input ciphertexts; re-randomise each (tfhe adds an encryption
//! of zero under the compact public key derived from the analyst's key, seeded from a hash of
//! the ciphertexts and a 32-byte nonce the keyhost draws from the OS for this request: the
//! analyst cannot predict it); subtract the keyhost's mask residue of each input as a scalar;
//! evaluate the nodes; re-randomise the output the same way; and compress all outputs into ONE
//! list. Rows run in parallel on a rayon pool of this evaluation alone, whose threads have
//! the server key set when they start (`set_server_key` is per thread), so evaluations of two
//! analysts never share a thread's key.

use std::io::Cursor;
use std::sync::Mutex;

use ghostpii_proto::circuit::{Circuit, Cmp, Node};
use rand::RngCore;
use rayon::prelude::*;
use tfhe::prelude::*;
use tfhe::safe_serialization::{safe_deserialize, safe_serialize};
use tfhe::{
    CompressedCiphertextList, CompressedCiphertextListBuilder, CompressedServerKey, FheBool, FheInt16, FheInt32,
    FheInt64, FheInt8, ReRandomizationContext, ReRandomizationMode,
};

use crate::client::{get, read_list};
use crate::{FheError, LIST_LIMIT, SERVER_KEY_LIMIT};

/// One evaluation at a time per process: FHE saturates the cores; a second one would only
/// slow both and double the memory.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub(crate) fn tfhe_err(e: impl std::fmt::Display) -> FheError {
    FheError::Tfhe(e.to_string())
}

/// A rayon pool whose threads have `key` set (`threads` 0: rayon's default count).
pub(crate) fn pool(key: &tfhe::ServerKey, threads: usize) -> Result<rayon::ThreadPool, FheError> {
    let k = key.clone();
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("ghostpii-fhe-{i}"))
        .start_handler(move |_| tfhe::set_server_key(k.clone()))
        .build()
        .map_err(tfhe_err)
}

/// An analyst's server key, decompressed (about three times its upload size in memory).
#[derive(Clone)]
pub struct ServerKey {
    key: tfhe::ServerKey,
    uploaded: usize,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerKey {{ uploaded: {} bytes }}", self.uploaded)
    }
}

impl ServerKey {
    /// Read a serialized compressed server key (tfhe's safe serialisation, at most
    /// [`SERVER_KEY_LIMIT`] bytes) and decompress it.
    pub fn from_bytes(bytes: &[u8]) -> Result<ServerKey, FheError> {
        if bytes.len() as u64 > SERVER_KEY_LIMIT {
            return Err(FheError::BadServerKey(format!(
                "{} bytes is over the limit of {SERVER_KEY_LIMIT}",
                bytes.len()
            )));
        }
        let compressed: CompressedServerKey = safe_deserialize(Cursor::new(bytes), SERVER_KEY_LIMIT)
            .map_err(|e| FheError::BadServerKey(e.to_string()))?;
        // decompression runs tfhe's own parallel code: catch a panic on a malformed key
        let key = std::panic::catch_unwind(move || compressed.decompress())
            .map_err(|_| FheError::BadServerKey("it does not decompress".into()))?;
        Ok(ServerKey {
            key,
            uploaded: bytes.len(),
        })
    }

    /// The size of the upload, in bytes.
    pub fn uploaded(&self) -> usize {
        self.uploaded
    }

    /// Bytes of memory the decompressed key holds, estimated (three times the upload).
    pub fn memory(&self) -> usize {
        self.uploaded.saturating_mul(3)
    }
}

/// What to evaluate: a checked circuit at a width, over `rows` rows whose input ciphertexts
/// are `ciphertexts` (row-major: `row · inputs + i`), with the keyhost's mask residue of each
/// (`masks`, the same order).
pub struct Evaluation<'a> {
    pub circuit: &'a Circuit,
    pub bits: u32,
    pub rows: usize,
    pub ciphertexts: &'a [u8],
    pub masks: &'a [i64],
    /// Rayon threads (0: one per core).
    pub threads: usize,
}

/// Evaluate: one serialized compressed list of `rows` outputs (booleans or `bits`-bit
/// integers), encrypted under the analyst's key. `progress` is called with rows done.
pub fn evaluate(key: &ServerKey, e: &Evaluation<'_>, progress: &(dyn Fn(usize) + Sync)) -> Result<Vec<u8>, FheError> {
    let n = e.circuit.inputs.len();
    if e.masks.len() != e.rows * n {
        return Err(FheError::Circuit(format!(
            "{} mask residues for {} rows of {n} inputs",
            e.masks.len(),
            e.rows
        )));
    }
    let list = read_list(e.ciphertexts, e.rows * n)?;
    let mut nonce = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let pool = pool(&key.key, e.threads)?;
    let done = std::sync::atomic::AtomicUsize::new(0);
    pool.install(|| {
        let outs: Vec<Out> = (0..e.rows)
            .into_par_iter()
            .map(|row| {
                let masks = &e.masks[row * n..(row + 1) * n];
                let out = match e.bits {
                    8 => w8::row(&list, e.circuit, row, masks, &nonce),
                    16 => w16::row(&list, e.circuit, row, masks, &nonce),
                    32 => w32::row(&list, e.circuit, row, masks, &nonce),
                    64 => w64::row(&list, e.circuit, row, masks, &nonce),
                    w => Err(FheError::Width(w)),
                };
                progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
                out
            })
            .collect::<Result<_, _>>()?;
        let mut b = CompressedCiphertextListBuilder::new();
        for o in outs {
            match o {
                Out::B(x) => b.push(x),
                Out::I8(x) => b.push(x),
                Out::I16(x) => b.push(x),
                Out::I32(x) => b.push(x),
                Out::I64(x) => b.push(x),
            };
        }
        let list = b.build().map_err(tfhe_err)?;
        let mut bytes = Vec::new();
        safe_serialize(&list, &mut bytes, LIST_LIMIT).map_err(tfhe_err)?;
        Ok(bytes)
    })
}

/// One row's output.
enum Out {
    B(FheBool),
    I8(FheInt8),
    I16(FheInt16),
    I32(FheInt32),
    I64(FheInt64),
}

/// The seeds of a re-randomisation context: tfhe's `ReRandomizationContext` hashes the
/// ciphertexts, the function description (a label, the request's nonce and the row) and a
/// counter. `$cts`: a slice of `&mut` ciphertexts of one concrete type.
macro_rules! rerandomise {
    ($cts:expr, $nonce:expr, $row:expr, $label:expr) => {{
        let cts = &mut $cts;
        let r = ($row as u64).to_le_bytes();
        let mut ctx = ReRandomizationContext::new(
            *b"TFHE_Rrd",
            [
                b"ghostpii-compute-v1".as_slice(),
                $label.as_slice(),
                $nonce.as_slice(),
                r.as_slice(),
            ],
            *b"TFHE_Enc",
        );
        for c in cts.iter() {
            ctx.add_ciphertext(&**c);
        }
        let mut seeds = ctx.finalize();
        let mut result: Result<(), FheError> = Ok(());
        for c in cts.iter_mut() {
            let done = seeds.next_seed().map_err(tfhe_err).and_then(|seed| {
                c.re_randomize(ReRandomizationMode::UseAvailableMode, seed)
                    .map_err(tfhe_err)
            });
            if let Err(e) = done {
                result = Err(e);
                break;
            }
        }
        result
    }};
}

fn rerandomise_out(o: &mut Out, nonce: &[u8; 32], row: usize) -> Result<(), FheError> {
    match o {
        Out::B(x) => rerandomise!([x], nonce, row, b"out"),
        Out::I8(x) => rerandomise!([x], nonce, row, b"out"),
        Out::I16(x) => rerandomise!([x], nonce, row, b"out"),
        Out::I32(x) => rerandomise!([x], nonce, row, b"out"),
        Out::I64(x) => rerandomise!([x], nonce, row, b"out"),
    }
}

fn flip(c: Cmp) -> Cmp {
    match c {
        Cmp::Gt => Cmp::Lt,
        Cmp::Ge => Cmp::Le,
        Cmp::Lt => Cmp::Gt,
        Cmp::Le => Cmp::Ge,
        Cmp::Eq => Cmp::Eq,
        Cmp::Ne => Cmp::Ne,
    }
}

fn compare_clear(c: Cmp, x: i64, y: i64) -> bool {
    match c {
        Cmp::Gt => x > y,
        Cmp::Ge => x >= y,
        Cmp::Lt => x < y,
        Cmp::Le => x <= y,
        Cmp::Eq => x == y,
        Cmp::Ne => x != y,
    }
}

/// The evaluator of one width: `$T` the ciphertext type, `$C` its clear type, `$O` its `Out`.
macro_rules! width {
    ($m:ident, $T:ty, $C:ty, $O:ident) => {
        mod $m {
            use super::*;

            /// A node's value: encrypted or constant, integer or boolean.
            enum V {
                I($T),
                B(FheBool),
                CI(i64),
                CB(bool),
            }

            /// An integer operand: encrypted or constant (booleans count 0/1).
            enum N {
                E($T),
                C(i64),
            }

            fn num(v: &V) -> N {
                match v {
                    V::I(x) => N::E(x.clone()),
                    V::B(b) => N::E(b.clone().cast_into()),
                    V::CI(c) => N::C(*c),
                    V::CB(b) => N::C(i64::from(*b)),
                }
            }

            fn lift(n: N) -> $T {
                match n {
                    N::E(x) => x,
                    N::C(c) => <$T>::encrypt_trivial(c as $C),
                }
            }

            fn boolean(v: &V) -> Result<Result<FheBool, bool>, FheError> {
                match v {
                    V::B(b) => Ok(Ok(b.clone())),
                    V::CB(b) => Ok(Err(*b)),
                    _ => Err(FheError::Circuit("an integer where a boolean is needed".into())),
                }
            }

            fn cmp(c: Cmp, x: &$T, y: $C) -> FheBool {
                match c {
                    Cmp::Gt => x.gt(y),
                    Cmp::Ge => x.ge(y),
                    Cmp::Lt => x.lt(y),
                    Cmp::Le => x.le(y),
                    Cmp::Eq => x.eq(y),
                    Cmp::Ne => x.ne(y),
                }
            }

            fn cmp2(c: Cmp, x: &$T, y: &$T) -> FheBool {
                match c {
                    Cmp::Gt => x.gt(y),
                    Cmp::Ge => x.ge(y),
                    Cmp::Lt => x.lt(y),
                    Cmp::Le => x.le(y),
                    Cmp::Eq => x.eq(y),
                    Cmp::Ne => x.ne(y),
                }
            }

            fn step(node: &Node, v: &[V], inputs: &[$T]) -> Result<V, FheError> {
                let g = |k: u32| &v[k as usize];
                Ok(match *node {
                    Node::Input { index } => V::I(inputs[index as usize].clone()),
                    Node::Const { value } => V::CI(value),
                    Node::Bool { value } => V::CB(value),
                    Node::Add { a, b } => match (num(g(a)), num(g(b))) {
                        (N::C(x), N::C(y)) => V::CI(x.wrapping_add(y)),
                        (N::E(x), N::C(c)) | (N::C(c), N::E(x)) => V::I(&x + (c as $C)),
                        (N::E(x), N::E(y)) => V::I(&x + &y),
                    },
                    Node::Sub { a, b } => match (num(g(a)), num(g(b))) {
                        (N::C(x), N::C(y)) => V::CI(x.wrapping_sub(y)),
                        (N::E(x), N::C(c)) => V::I(&x - (c as $C)),
                        (N::C(c), N::E(x)) => V::I(-&x + (c as $C)),
                        (N::E(x), N::E(y)) => V::I(&x - &y),
                    },
                    Node::Mul { a, b } => match (num(g(a)), num(g(b))) {
                        (N::C(x), N::C(y)) => V::CI(x.wrapping_mul(y)),
                        (N::E(x), N::C(c)) | (N::C(c), N::E(x)) => V::I(&x * (c as $C)),
                        (N::E(x), N::E(y)) => V::I(&x * &y),
                    },
                    Node::Neg { a } => match num(g(a)) {
                        N::C(x) => V::CI(x.wrapping_neg()),
                        N::E(x) => V::I(-&x),
                    },
                    Node::Abs { a } => match num(g(a)) {
                        N::C(x) => V::CI(x.wrapping_abs()),
                        N::E(x) => V::I(x.abs()),
                    },
                    Node::Min { a, b } | Node::Max { a, b } => {
                        let min = matches!(node, Node::Min { .. });
                        match (num(g(a)), num(g(b))) {
                            (N::C(x), N::C(y)) => V::CI(if min { x.min(y) } else { x.max(y) }),
                            (N::E(x), N::C(c)) | (N::C(c), N::E(x)) => {
                                V::I(if min { x.min(c as $C) } else { x.max(c as $C) })
                            }
                            (N::E(x), N::E(y)) => V::I(if min { x.min(&y) } else { x.max(&y) }),
                        }
                    }
                    Node::Pow { a, exp } => match num(g(a)) {
                        N::C(x) => V::CI(x.wrapping_pow(exp)),
                        N::E(x) => {
                            let mut acc = x.clone();
                            for _ in 1..exp {
                                acc = &acc * &x;
                            }
                            V::I(acc)
                        }
                    },
                    Node::Cmp { cmp: c, a, b } => match (num(g(a)), num(g(b))) {
                        (N::C(x), N::C(y)) => V::CB(compare_clear(c, x, y)),
                        (N::E(x), N::C(k)) => V::B(cmp(c, &x, k as $C)),
                        (N::C(k), N::E(x)) => V::B(cmp(flip(c), &x, k as $C)),
                        (N::E(x), N::E(y)) => V::B(cmp2(c, &x, &y)),
                    },
                    Node::And { a, b } | Node::Or { a, b } => {
                        let and = matches!(node, Node::And { .. });
                        match (boolean(g(a))?, boolean(g(b))?) {
                            (Err(x), Err(y)) => V::CB(if and { x && y } else { x || y }),
                            (Ok(x), Err(c)) | (Err(c), Ok(x)) => match (and, c) {
                                (true, true) | (false, false) => V::B(x),
                                (true, false) => V::CB(false),
                                (false, true) => V::CB(true),
                            },
                            (Ok(x), Ok(y)) => V::B(if and { &x & &y } else { &x | &y }),
                        }
                    }
                    Node::Not { a } => match boolean(g(a))? {
                        Err(c) => V::CB(!c),
                        Ok(x) => V::B(!&x),
                    },
                    Node::Select {
                        cond,
                        then,
                        otherwise,
                    } => match boolean(g(cond))? {
                        Err(true) => clone(g(then)),
                        Err(false) => clone(g(otherwise)),
                        Ok(c) => {
                            let (t, o) = (g(then), g(otherwise));
                            if matches!(t, V::B(_) | V::CB(_)) && matches!(o, V::B(_) | V::CB(_)) {
                                let t = lift_bool(t);
                                let o = lift_bool(o);
                                V::B(&(&c & &t) | &(&!&c & &o))
                            } else {
                                V::I(c.if_then_else(&lift(num(t)), &lift(num(o))))
                            }
                        }
                    },
                })
            }

            fn lift_bool(v: &V) -> FheBool {
                match v {
                    V::B(b) => b.clone(),
                    V::CB(c) => FheBool::encrypt_trivial(*c),
                    _ => unreachable!("checked boolean"),
                }
            }

            fn clone(v: &V) -> V {
                match v {
                    V::I(x) => V::I(x.clone()),
                    V::B(x) => V::B(x.clone()),
                    V::CI(c) => V::CI(*c),
                    V::CB(c) => V::CB(*c),
                }
            }

            /// Evaluate the circuit on one row.
            pub(super) fn row(
                list: &CompressedCiphertextList,
                circuit: &Circuit,
                row: usize,
                masks: &[i64],
                nonce: &[u8; 32],
            ) -> Result<Out, FheError> {
                let n = circuit.inputs.len();
                let mut cts: Vec<$T> = (0..n)
                    .map(|i| get::<$T>(list, row * n + i))
                    .collect::<Result<_, _>>()?;
                let mut refs: Vec<&mut $T> = cts.iter_mut().collect();
                rerandomise!(refs, nonce, row, b"in")?;
                let inputs: Vec<$T> = cts.iter().zip(masks).map(|(c, &m)| c - (m as $C)).collect();
                let mut vals: Vec<V> = Vec::with_capacity(circuit.nodes.len());
                for node in &circuit.nodes {
                    let v = step(node, &vals, &inputs)?;
                    vals.push(v);
                }
                let mut out = match vals.swap_remove(circuit.output as usize) {
                    V::I(x) => Out::$O(x),
                    V::CI(c) => Out::$O(<$T>::encrypt_trivial(c as $C)),
                    V::B(b) => Out::B(b),
                    V::CB(c) => Out::B(FheBool::encrypt_trivial(c)),
                };
                rerandomise_out(&mut out, nonce, row)?;
                Ok(out)
            }
        }
    };
}

width!(w8, FheInt8, i8, I8);
width!(w16, FheInt16, i16, I16);
width!(w32, FheInt32, i32, I32);
width!(w64, FheInt64, i64, I64);
