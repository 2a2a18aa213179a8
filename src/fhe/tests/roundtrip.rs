//! The analyst's keys and the keyhost's evaluator together, on real tfhe ciphertexts: the
//! survey predicate over masked residues equals the plaintext predicate row by row.

use ghostpii_fhe::{evaluate, low_bits, AnalystKeys, Evaluation, ServerKey};
use ghostpii_proto::circuit::{Circuit, Cmp, Input, Node};
use ghostpii_proto::descriptor::Term;

fn term(c: i64, w: i64) -> Term {
    Term {
        column_id: c,
        epoch: 0,
        weight: w,
    }
}

/// Evaluate `circuit` on `rows` rows (no progress).
fn run(server: &ServerKey, circuit: &Circuit, bits: u32, rows: usize, cts: &[u8], masks: &[i64]) -> Vec<u8> {
    evaluate(
        server,
        &Evaluation {
            circuit,
            bits,
            rows,
            ciphertexts: cts,
            masks,
            threads: 0,
        },
        &|_| {},
    )
    .unwrap()
}

#[test]
fn masked_predicates_and_values_equal_plaintext() {
    let keys = AnalystKeys::generate().unwrap();
    let server = ServerKey::from_bytes(keys.server_key()).unwrap();
    assert!(
        ServerKey::from_bytes(&keys.server_key()[..1000]).is_err(),
        "a truncated key is refused"
    );
    // input 0: 3a + 2b; input 1: t (scale 1); (3a + 2b) + 7·(t > 1005) > 8, and the value
    // clip(3a + 2b − t/… ) as a second circuit
    let survey = Circuit {
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
            Node::Const { value: 8 },
            Node::Cmp {
                cmp: Cmp::Gt,
                a: 6,
                b: 7,
            },
        ],
        output: 8,
    };
    let a = survey.check(&[(0, 5), (950, 1050)]).unwrap();
    assert_eq!(a.bits, 16);
    let rows: Vec<(i64, i64, i64)> = vec![(1, 1, 1010), (0, 1, 1010), (1, 0, 990), (1, 1, 1005)];
    let masks: Vec<u128> = vec![
        0xdead_beef_0123_4567_89ab_cdef_0011_2233,
        0x1234_5678_9abc_def0_0fed_cba9_8765_4321,
        0xffff_ffff_ffff_ffff_ffff_ffff_ffff_fff0,
        7,
        0x8000_0000_0000_0000_0000_0000_0000_8001,
        0x0123_0123_0123_0123_0123_0123_0123_0123,
        3,
        u128::MAX,
    ];
    // the analyst's residues: (form + mask form) mod 2^16; the keyhost's: the mask form
    let mut cells = Vec::new();
    let mut mask_residues = Vec::new();
    for (r, &(x, y, t)) in rows.iter().enumerate() {
        let (m0, m1) = (masks[2 * r], masks[2 * r + 1]);
        let form0 = (3 * x + 2 * y) as i128 as u128;
        cells.push(low_bits(form0.wrapping_add(m0), 16));
        cells.push(low_bits((t as i128 as u128).wrapping_add(m1), 16));
        mask_residues.push(low_bits(m0, 16));
        mask_residues.push(low_bits(m1, 16));
    }
    let cts = keys.encrypt(16, &cells).unwrap();
    let out = run(&server, &survey, 16, rows.len(), &cts, &mask_residues);
    let got = keys.decrypt_bools(&out, rows.len()).unwrap();
    let want: Vec<bool> = rows
        .iter()
        .map(|&(x, y, t)| 3 * x + 2 * y + 7 * i64::from(t > 1005) > 8)
        .collect();
    assert_eq!(got, want);
    assert_eq!(want, vec![true, true, false, false]);
    // the wrong masks give another answer: the result depends on the keyhost's masks
    let wrong: Vec<i64> = mask_residues.iter().map(|m| m + 1000).collect();
    let out = run(&server, &survey, 16, rows.len(), &cts, &wrong);
    assert_ne!(keys.decrypt_bools(&out, rows.len()).unwrap(), want);
    // an integer output: abs(form0 − 3)·2, 8 bits, one input
    let value = Circuit {
        inputs: vec![Input {
            terms: vec![term(1, 3), term(2, 2)],
            offset: 0,
        }],
        nodes: vec![
            Node::Input { index: 0 },
            Node::Const { value: 3 },
            Node::Sub { a: 0, b: 1 },
            Node::Abs { a: 2 },
            Node::Const { value: 2 },
            Node::Mul { a: 3, b: 4 },
        ],
        output: 5,
    };
    assert_eq!(value.check(&[(0, 5)]).unwrap().bits, 8);
    let (mut c8, mut m8) = (Vec::new(), Vec::new());
    for (r, &(x, y, _)) in rows.iter().enumerate() {
        let m = masks[r];
        c8.push(low_bits(((3 * x + 2 * y) as u128).wrapping_add(m), 8));
        m8.push(low_bits(m, 8));
    }
    let cts = keys.encrypt(8, &c8).unwrap();
    let out = run(&server, &value, 8, rows.len(), &cts, &m8);
    let got = keys.decrypt_ints(&out, rows.len(), 8).unwrap();
    let want: Vec<i64> = rows.iter().map(|&(x, y, _)| (3 * x + 2 * y - 3).abs() * 2).collect();
    assert_eq!(got, want);
    // a list of the wrong length is refused
    assert!(keys.decrypt_ints(&out, rows.len() + 1, 8).is_err());
}
