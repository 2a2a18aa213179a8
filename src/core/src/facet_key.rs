//! `facet_key!`: the type of one AES-128 facet key (`keys`, `ore`, `det` declare theirs with it).

/// An AES-128 facet key: zeroized on drop, never printed.
macro_rules! facet_key {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            cipher: aes::Aes128,
            raw: [u8; 16],
        }

        impl Drop for $name {
            fn drop(&mut self) {
                zeroize::Zeroize::zeroize(&mut self.raw);
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}(<redacted>)", stringify!($name))
            }
        }

        impl $name {
            pub fn from_bytes(bytes: &[u8; 16]) -> Self {
                use aes::cipher::KeyInit;
                $name {
                    cipher: aes::Aes128::new(aes::cipher::generic_array::GenericArray::from_slice(bytes)),
                    raw: *bytes,
                }
            }

            pub fn try_from_slice(bytes: &[u8]) -> $crate::error::Result<Self> {
                let arr: [u8; 16] = bytes.try_into().map_err(|_| {
                    $crate::error::CoreError::InvalidKey(format!(
                        concat!($label, " key must be 16 bytes, got {}"),
                        bytes.len()
                    ))
                })?;
                Ok(Self::from_bytes(&arr))
            }

            /// The raw key, for handing to the owner who encrypts. Never log it.
            pub fn expose_bytes(&self) -> &[u8; 16] {
                &self.raw
            }
        }
    };
}
pub(crate) use facet_key;
