use thiserror::Error;

/// Errors of the crypto/format core. Each names what is wrong.
#[derive(Debug, Error)]
pub enum CoreError {
    #[error("invalid key material: {0}")]
    InvalidKey(String),
    #[error("corrupt ciphertext: {0}")]
    CorruptCiphertext(String),
    #[error("authentication failed for row id {rid}: the ciphertext or its row id was altered, or it belongs to another column")]
    AuthenticationFailed { rid: u64 },
    #[error("invalid rid set: {0}")]
    InvalidRidSet(String),
    #[error("invalid column metadata: {0}")]
    InvalidMetadata(String),
    #[error("invalid sealed value: {0}")]
    InvalidSealed(String),
}

pub type Result<T> = std::result::Result<T, CoreError>;
