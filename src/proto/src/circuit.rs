//! Row-wise circuits: a typed, backend-neutral expression over the encrypted cells of one row
//! (`POST /v1/compute`, `docs/rowwise.md`).
//!
//! A circuit's *inputs* are linear forms `Σ_j w_j · X_j` over `num` columns (`X_j` the stored
//! integer of column `j`, the user's value times `10^scale`). The analyst, who holds the masked
//! cells `X_j + m_j`, computes each form over its cells in plaintext (masks are additive) and
//! encrypts only the result's low `bits` bits under its own FHE key; the keyhost subtracts
//! `Σ_j w_j · m_j mod 2^bits` homomorphically. Everything non-linear is a *node* of the circuit.
//!
//! Nodes form a DAG in topological order: each names earlier nodes by index. Integer nodes are
//! signed `bits`-bit integers (two's complement); boolean nodes are 0/1 and count as 0/1 where an
//! integer is expected (`7·(t > 100)`). [`Circuit::check`] types every node and bounds every
//! integer node by interval arithmetic from the inputs' declared bounds; [`Analysis::bits`] is
//! the narrowest width (8, 16, 32 or 64) in which no node can wrap. Both the client (to choose
//! the width it encrypts at) and the keyhost (to refuse a width that could wrap) run it.

use serde::{Deserialize, Serialize};

use crate::descriptor::Term;

/// Most nodes of one circuit.
pub const MAX_NODES: usize = 256;
/// Most inputs (linear forms) of one circuit.
pub const MAX_INPUTS: usize = 16;
/// Largest exponent of `pow`.
pub const MAX_POW: u32 = 4;
/// The widths a circuit can be evaluated at.
pub const WIDTHS: [u32; 4] = [8, 16, 32, 64];

/// One linear form over `num` columns of one dataset: `Σ weight · X + offset` (stored
/// integers; the public `offset` centres the form on its bounds so that a narrow width holds
/// it: the analyst adds it to its residue, the keyhost's mask is unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub terms: Vec<Term>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Cmp {
    pub fn as_str(self) -> &'static str {
        match self {
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
        }
    }
}

/// One node. Operands are indices of earlier nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Node {
    /// The value of input `index` (a linear form, unmasked by the keyhost).
    Input {
        index: u32,
    },
    /// An integer constant.
    Const {
        value: i64,
    },
    /// A boolean constant.
    Bool {
        value: bool,
    },
    Add {
        a: u32,
        b: u32,
    },
    Sub {
        a: u32,
        b: u32,
    },
    Mul {
        a: u32,
        b: u32,
    },
    Neg {
        a: u32,
    },
    Abs {
        a: u32,
    },
    Min {
        a: u32,
        b: u32,
    },
    Max {
        a: u32,
        b: u32,
    },
    /// `a^exp`, `2 ≤ exp ≤ MAX_POW`.
    Pow {
        a: u32,
        exp: u32,
    },
    Cmp {
        cmp: Cmp,
        a: u32,
        b: u32,
    },
    And {
        a: u32,
        b: u32,
    },
    Or {
        a: u32,
        b: u32,
    },
    Not {
        a: u32,
    },
    /// `when(cond).then(then).otherwise(otherwise)`.
    Select {
        cond: u32,
        then: u32,
        otherwise: u32,
    },
}

impl Node {
    /// The node's op name (as in its JSON `"op"` and in grants' `ops`).
    pub fn op(&self) -> &'static str {
        match self {
            Node::Input { .. } => "input",
            Node::Const { .. } => "const",
            Node::Bool { .. } => "bool",
            Node::Add { .. } => "add",
            Node::Sub { .. } => "sub",
            Node::Mul { .. } => "mul",
            Node::Neg { .. } => "neg",
            Node::Abs { .. } => "abs",
            Node::Min { .. } => "min",
            Node::Max { .. } => "max",
            Node::Pow { .. } => "pow",
            Node::Cmp { .. } => "cmp",
            Node::And { .. } => "and",
            Node::Or { .. } => "or",
            Node::Not { .. } => "not",
            Node::Select { .. } => "select",
        }
    }

    /// The operands, in order.
    pub fn operands(&self) -> Vec<u32> {
        match *self {
            Node::Input { .. } | Node::Const { .. } | Node::Bool { .. } => vec![],
            Node::Neg { a } | Node::Abs { a } | Node::Not { a } | Node::Pow { a, .. } => vec![a],
            Node::Add { a, b }
            | Node::Sub { a, b }
            | Node::Mul { a, b }
            | Node::Min { a, b }
            | Node::Max { a, b }
            | Node::Cmp { a, b, .. }
            | Node::And { a, b }
            | Node::Or { a, b } => vec![a, b],
            Node::Select { cond, then, otherwise } => vec![cond, then, otherwise],
        }
    }
}

/// The ops a grant may name in `ops` (every node op but `input`, `const`, `bool`).
pub const OPS: [&str; 13] = [
    "add", "sub", "mul", "neg", "abs", "min", "max", "pow", "cmp", "and", "or", "not", "select",
];

/// A circuit: its inputs, its nodes and the node whose value is the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Circuit {
    pub inputs: Vec<Input>,
    pub nodes: Vec<Node>,
    pub output: u32,
}

/// What the answer gives the analyst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// The output itself, encrypted under the analyst's key: a predicate (boolean output) or,
    /// where the grant allows values, an integer.
    Revealed,
}

/// The JSON part of a compute request (`POST /v1/compute`, a request frame): the ciphertexts
/// and the rid set travel as its blobs. `R`: how the rid set travels (see `descriptor`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputeRequest<R, B> {
    pub dataset_id: i64,
    /// The rows, ascending rid order: ciphertext `row · inputs + i` is input `i` of that row.
    pub rids: R,
    pub circuit: Circuit,
    /// The width of every integer (8, 16, 32 or 64): at least [`Analysis::bits`].
    pub bits: u32,
    pub output: OutputKind,
    /// The expression as the analyst wrote it, for the audit log.
    pub text: String,
    /// The input ciphertexts (one compressed list under the analyst's key).
    pub ciphertexts: B,
}

/// The type of a node's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Bool,
}

/// Why a circuit is malformed. Each message names the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitError(pub String);

impl std::fmt::Display for CircuitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CircuitError {}

fn err<T>(m: impl Into<String>) -> Result<T, CircuitError> {
    Err(CircuitError(m.into()))
}

/// The result of [`Circuit::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    pub kinds: Vec<Kind>,
    /// Inclusive bounds of every node (booleans: `0..=1`).
    pub bounds: Vec<(i128, i128)>,
    /// The narrowest width in which no integer node (nor input) can wrap.
    pub bits: u32,
    /// Whether some node depends on an input (a circuit of constants is refused).
    pub output_kind: Kind,
}

/// Bounds of a linear form from its columns' bounds (`None`: the column has none) and its offset.
pub fn input_bounds(terms: &[(i64, Option<(i64, i64)>)], offset: i64) -> Result<(i128, i128), CircuitError> {
    let (mut lo, mut hi) = (i128::from(offset), i128::from(offset));
    for &(w, b) in terms {
        let Some((l, h)) = b else {
            return err(
                "an encrypted column of the expression has no declared bounds, so no width can hold it; \
                        encrypt it with bounds",
            );
        };
        let (a, b) = (i128::from(w) * i128::from(l), i128::from(w) * i128::from(h));
        lo += a.min(b);
        hi += a.max(b);
    }
    Ok((lo, hi))
}

fn fits(b: (i128, i128), bits: u32) -> bool {
    let half = 1i128 << (bits - 1);
    b.0 >= -half && b.1 < half
}

impl Circuit {
    /// Type and bound every node; `inputs`: the bounds of each input (see [`input_bounds`]).
    pub fn check(&self, inputs: &[(i128, i128)]) -> Result<Analysis, CircuitError> {
        if self.inputs.is_empty() || self.inputs.len() > MAX_INPUTS {
            return err(format!(
                "a circuit has 1 to {MAX_INPUTS} inputs (linear forms over encrypted columns), not {}",
                self.inputs.len()
            ));
        }
        if inputs.len() != self.inputs.len() {
            return err("one bound per input is needed");
        }
        if self.nodes.is_empty() || self.nodes.len() > MAX_NODES {
            return err(format!(
                "a circuit has 1 to {MAX_NODES} nodes, not {}",
                self.nodes.len()
            ));
        }
        for (i, inp) in self.inputs.iter().enumerate() {
            if inp.terms.is_empty() {
                return err(format!("input {i} has no terms"));
            }
        }
        let mut kinds: Vec<Kind> = Vec::with_capacity(self.nodes.len());
        let mut bounds: Vec<(i128, i128)> = Vec::with_capacity(self.nodes.len());
        let mut depends: Vec<bool> = Vec::with_capacity(self.nodes.len());
        for (i, node) in self.nodes.iter().enumerate() {
            for o in node.operands() {
                if o as usize >= i {
                    return err(format!(
                        "node {i} ({}) uses node {o}, which does not come before it",
                        node.op()
                    ));
                }
            }
            let b = |k: u32| bounds[k as usize];
            let int = |k: u32| -> Result<(i128, i128), CircuitError> { Ok(bounds[k as usize]) };
            let boolean = |k: u32| -> Result<(), CircuitError> {
                if kinds[k as usize] != Kind::Bool {
                    return err(format!(
                        "node {i} ({}) needs a boolean operand, node {k} is an integer",
                        node.op()
                    ));
                }
                Ok(())
            };
            let (kind, bound) = match *node {
                Node::Input { index } => {
                    let Some(&bd) = inputs.get(index as usize) else {
                        return err(format!("node {i} names input {index}, but there are {}", inputs.len()));
                    };
                    (Kind::Int, bd)
                }
                Node::Const { value } => (Kind::Int, (i128::from(value), i128::from(value))),
                Node::Bool { value } => (Kind::Bool, (i128::from(value), i128::from(value))),
                Node::Add { a, b: c } => {
                    let (x, y) = (int(a)?, int(c)?);
                    (Kind::Int, (x.0 + y.0, x.1 + y.1))
                }
                Node::Sub { a, b: c } => {
                    let (x, y) = (int(a)?, int(c)?);
                    (Kind::Int, (x.0 - y.1, x.1 - y.0))
                }
                Node::Mul { a, b: c } => {
                    let (x, y) = (int(a)?, int(c)?);
                    let p = [x.0 * y.0, x.0 * y.1, x.1 * y.0, x.1 * y.1];
                    (Kind::Int, (*p.iter().min().expect("4"), *p.iter().max().expect("4")))
                }
                Node::Neg { a } => {
                    let x = int(a)?;
                    (Kind::Int, (-x.1, -x.0))
                }
                Node::Abs { a } => {
                    let x = int(a)?;
                    let lo = if x.0 <= 0 && x.1 >= 0 {
                        0
                    } else {
                        x.0.abs().min(x.1.abs())
                    };
                    (Kind::Int, (lo, x.0.abs().max(x.1.abs())))
                }
                Node::Min { a, b: c } => {
                    let (x, y) = (int(a)?, int(c)?);
                    (Kind::Int, (x.0.min(y.0), x.1.min(y.1)))
                }
                Node::Max { a, b: c } => {
                    let (x, y) = (int(a)?, int(c)?);
                    (Kind::Int, (x.0.max(y.0), x.1.max(y.1)))
                }
                Node::Pow { a, exp } => {
                    if !(2..=MAX_POW).contains(&exp) {
                        return err(format!(
                            "node {i}: pow takes an exponent from 2 to {MAX_POW}, not {exp}"
                        ));
                    }
                    let x = int(a)?;
                    let m = x.0.abs().max(x.1.abs());
                    let top = m.checked_pow(exp).unwrap_or(i128::MAX / 2);
                    let lo = if exp % 2 == 0 {
                        if x.0 <= 0 && x.1 >= 0 {
                            0
                        } else {
                            x.0.abs().min(x.1.abs()).pow(exp)
                        }
                    } else {
                        x.0.checked_pow(exp).unwrap_or(i128::MIN / 2)
                    };
                    (
                        Kind::Int,
                        (
                            lo,
                            if exp % 2 == 0 {
                                top
                            } else {
                                x.1.checked_pow(exp).unwrap_or(top)
                            },
                        ),
                    )
                }
                Node::Cmp { a, b: c, .. } => {
                    let _ = (b(a), b(c));
                    (Kind::Bool, (0, 1))
                }
                Node::And { a, b: c } | Node::Or { a, b: c } => {
                    boolean(a)?;
                    boolean(c)?;
                    (Kind::Bool, (0, 1))
                }
                Node::Not { a } => {
                    boolean(a)?;
                    (Kind::Bool, (0, 1))
                }
                Node::Select { cond, then, otherwise } => {
                    boolean(cond)?;
                    let (x, y) = (b(then), b(otherwise));
                    let kind = if kinds[then as usize] == Kind::Bool && kinds[otherwise as usize] == Kind::Bool {
                        Kind::Bool
                    } else {
                        Kind::Int
                    };
                    (kind, (x.0.min(y.0), x.1.max(y.1)))
                }
            };
            let dep = matches!(node, Node::Input { .. }) || node.operands().iter().any(|&o| depends[o as usize]);
            kinds.push(kind);
            bounds.push(bound);
            depends.push(dep);
        }
        let out = self.output as usize;
        if out >= self.nodes.len() {
            return err(format!(
                "the output names node {out}, but there are {}",
                self.nodes.len()
            ));
        }
        if !depends[out] {
            return err("the output depends on no encrypted input; compute it in plaintext");
        }
        let bits = WIDTHS
            .into_iter()
            .find(|&w| bounds.iter().all(|&b| fits(b, w)))
            .ok_or_else(|| {
                CircuitError(
                    "some intermediate value of the expression can exceed 64 bits over the columns' declared bounds; \
                     use smaller constants or tighter bounds"
                        .into(),
                )
            })?;
        Ok(Analysis {
            output_kind: kinds[out],
            kinds,
            bounds,
            bits,
        })
    }

    /// The columns the circuit reads (column ids, each once, ascending).
    pub fn column_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .inputs
            .iter()
            .flat_map(|i| i.terms.iter().map(|t| t.column_id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The ops the circuit uses (each once, in [`OPS`] order).
    pub fn ops(&self) -> Vec<&'static str> {
        OPS.into_iter()
            .filter(|op| self.nodes.iter().any(|n| n.op() == *op))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(c: i64, w: i64) -> Term {
        Term {
            column_id: c,
            epoch: 0,
            weight: w,
        }
    }

    #[test]
    fn the_survey_fits_in_sixteen_bits_and_types_as_a_predicate() {
        // 3a + 2b (0..=1 each) as one input, t (scale 1, 950..=1050) as another:
        // (3a + 2b) + 7·(t > 1005) > 15
        let c = Circuit {
            inputs: vec![
                Input {
                    terms: vec![term(1, 3), term(2, 2)],
                    offset: 0,
                },
                Input {
                    terms: vec![term(3, 1)],
                    offset: 0,
                },
            ],
            nodes: vec![
                Node::Input { index: 0 },
                Node::Input { index: 1 },
                Node::Const { value: 1005 },
                Node::Cmp {
                    cmp: Cmp::Gt,
                    a: 1,
                    b: 2,
                },
                Node::Const { value: 7 },
                Node::Mul { a: 4, b: 3 },
                Node::Add { a: 0, b: 5 },
                Node::Const { value: 15 },
                Node::Cmp {
                    cmp: Cmp::Gt,
                    a: 6,
                    b: 7,
                },
            ],
            output: 8,
        };
        let a = c.check(&[(0, 5), (950, 1050)]).unwrap();
        assert_eq!(a.bits, 16);
        assert_eq!(a.output_kind, Kind::Bool);
        assert_eq!(a.bounds[6], (0, 12));
        assert_eq!(c.ops(), vec!["add", "mul", "cmp"]);
        assert_eq!(c.column_ids(), vec![1, 2, 3]);
        // the same with the temperature input bounded in 8 bits
        assert_eq!(
            c.check(&[(0, 5), (0, 100)]).unwrap().bits,
            16,
            "the constant 1005 needs 16 bits"
        );
    }

    #[test]
    fn malformed_circuits_are_refused_with_the_problem_named() {
        let base = |nodes: Vec<Node>, output: u32| Circuit {
            inputs: vec![Input {
                terms: vec![term(1, 1)],
                offset: 0,
            }],
            nodes,
            output,
        };
        let forward = base(vec![Node::Add { a: 0, b: 1 }, Node::Input { index: 0 }], 0);
        assert!(forward.check(&[(0, 9)]).unwrap_err().0.contains("does not come before"));
        let constant = base(vec![Node::Input { index: 0 }, Node::Const { value: 3 }], 1);
        assert!(constant
            .check(&[(0, 9)])
            .unwrap_err()
            .0
            .contains("depends on no encrypted input"));
        let not_int = base(vec![Node::Input { index: 0 }, Node::Not { a: 0 }], 1);
        assert!(not_int.check(&[(0, 9)]).unwrap_err().0.contains("needs a boolean"));
        let wide = base(vec![Node::Input { index: 0 }, Node::Pow { a: 0, exp: 4 }], 1);
        assert!(wide.check(&[(0, 1 << 40)]).unwrap_err().0.contains("64 bits"));
        let pow = base(vec![Node::Input { index: 0 }, Node::Pow { a: 0, exp: 9 }], 1);
        assert!(pow.check(&[(0, 3)]).unwrap_err().0.contains("exponent"));
        assert!(input_bounds(&[(2, None)], 0)
            .unwrap_err()
            .0
            .contains("no declared bounds"));
        assert_eq!(
            input_bounds(&[(2, Some((-1, 3))), (-1, Some((0, 5)))], 0).unwrap(),
            (-7, 6)
        );
        assert_eq!(input_bounds(&[(1, Some((950, 1050)))], -1000).unwrap(), (-50, 50));
    }
}
