//! ghostpii-fhe: row-wise computation over ciphertext with tfhe-rs (`docs/rowwise.md`).
//!
//! The only crate of the workspace that depends on `tfhe`. Two sides:
//!
//! - [`client`] (the analyst): its own key pair, the compressed server key it uploads to the
//!   keyhost, encryption of per-row residues as one compressed ciphertext list, decryption of
//!   the results.
//! - [`server`] (the keyhost): a server key read from the analyst's bytes (size-limited), and
//!   the evaluation of a [`ghostpii_proto::circuit::Circuit`] over many rows in parallel: per row
//!   it removes the keyhost's masks by scalar subtraction, re-randomises the inputs and the
//!   output with fresh keyhost randomness, evaluates, and compresses the outputs.
//!
//! Every width uses the same parameter set ([`config`]): 2-bit messages with 2 carry bits,
//! KS-PBS, TUniform noise, 2^-128 failure probability (tfhe's default), with list compression
//! and re-randomisation through the compact public key derived from the compute key.

pub mod client;
pub mod server;

use tfhe::shortint::parameters::{
    ReRandomizationParameters, COMP_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128,
    PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128,
};
use tfhe::{Config, ConfigBuilder};

pub use client::AnalystKeys;
pub use server::{evaluate, Evaluation, ServerKey};

/// Largest serialized compressed server key accepted (the key of [`config`] is about 106 MB).
pub const SERVER_KEY_LIMIT: u64 = 256 << 20;
/// Largest serialized ciphertext list accepted.
pub const LIST_LIMIT: u64 = 1 << 30;

/// Why an FHE step failed. Each message names the problem.
#[derive(Debug, thiserror::Error)]
pub enum FheError {
    #[error("the FHE server key is not valid: {0}")]
    BadServerKey(String),
    #[error("the ciphertext list is not valid: {0}")]
    BadCiphertexts(String),
    #[error("the ciphertext list holds {got} ciphertexts, {expected} were expected")]
    Count { expected: usize, got: usize },
    #[error("width {0} is not supported (8, 16, 32 or 64 bits)")]
    Width(u32),
    #[error("the circuit cannot be evaluated: {0}")]
    Circuit(String),
    #[error("tfhe failed: {0}")]
    Tfhe(String),
}

/// The tfhe configuration of both sides.
pub fn config() -> Config {
    ConfigBuilder::with_custom_parameters(PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128)
        .enable_compression(COMP_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128)
        .enable_ciphertext_re_randomization(ReRandomizationParameters::DerivedCPKWithoutKeySwitch)
        .build()
}

/// `v` reduced to a signed `bits`-bit integer (two's complement of its low `bits` bits).
pub fn low_bits(v: u128, bits: u32) -> i64 {
    match bits {
        8 => v as u8 as i8 as i64,
        16 => v as u16 as i16 as i64,
        32 => v as u32 as i32 as i64,
        _ => v as u64 as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::low_bits;

    #[test]
    fn low_bits_are_the_twos_complement_residue() {
        assert_eq!(low_bits(5, 8), 5);
        assert_eq!(low_bits((-3i128) as u128, 8), -3);
        assert_eq!(low_bits(0x1_0000_0000_0000_00ff, 8), -1);
        assert_eq!(low_bits(300, 8), 44);
        assert_eq!(low_bits(300, 16), 300);
        assert_eq!(low_bits((-70000i128) as u128, 32), -70000);
        assert_eq!(low_bits(u128::MAX, 64), -1);
    }
}
