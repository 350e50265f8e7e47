//! [`Codec`]: how a group's values become the bytes stored in Redis, and back.
//!
//! The in-process tier keeps values as they are (no encoding on an in-process hit); a codec
//! runs when a value is written to Redis and when one is read from it. [`Json`] (serde_json)
//! is the default; [`Raw`] stores [`Bytes`] as they are, for a service that caches what it
//! sends (a rendered response body), so that a hit costs no serialisation at all.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Turns values of type `V` into bytes and back.
///
/// A value that does not decode is treated as a miss (and loaded again), so a codec can
/// change between deployments as long as the cache's namespace changes with it.
///
/// ```
/// use bytes::Bytes;
/// use marquee_cache::{Codec, CodecError};
///
/// /// Stores a `u64` as eight big-endian bytes.
/// struct BigEndian;
///
/// impl Codec<u64> for BigEndian {
///     fn encode(&self, value: &u64, out: &mut Vec<u8>) -> Result<(), CodecError> {
///         out.extend_from_slice(&value.to_be_bytes());
///         Ok(())
///     }
///
///     fn decode(&self, bytes: Bytes) -> Result<u64, CodecError> {
///         let array: [u8; 8] = bytes.as_ref().try_into().map_err(CodecError::new)?;
///         Ok(u64::from_be_bytes(array))
///     }
/// }
///
/// let mut out = Vec::new();
/// BigEndian.encode(&42, &mut out).unwrap();
/// assert_eq!(BigEndian.decode(Bytes::from(out)).unwrap(), 42);
/// assert!(BigEndian.decode(Bytes::from_static(b"short")).is_err());
/// ```
pub trait Codec<V>: Send + Sync + 'static {
    /// Appends the encoding of `value` to `out`.
    ///
    /// # Errors
    ///
    /// When `value` cannot be encoded; the value is then served but not cached.
    fn encode(&self, value: &V, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Decodes a value written by [`Codec::encode`].
    ///
    /// # Errors
    ///
    /// When `bytes` is not an encoding of a `V`; the read then counts as a miss.
    fn decode(&self, bytes: Bytes) -> Result<V, CodecError>;
}

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("codec: {0}")]
pub struct CodecError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl CodecError {
    /// Wraps the underlying error.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(error.into())
    }
}

/// JSON through serde_json: the default codec, for any `V: Serialize + DeserializeOwned`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl<V: Serialize + DeserializeOwned> Codec<V> for Json {
    fn encode(&self, value: &V, out: &mut Vec<u8>) -> Result<(), CodecError> {
        serde_json::to_writer(out, value).map_err(CodecError::new)
    }

    fn decode(&self, bytes: Bytes) -> Result<V, CodecError> {
        serde_json::from_slice(&bytes).map_err(CodecError::new)
    }
}

/// The bytes as they are: for values that are bytes already. Decoding shares the buffer
/// read from Redis instead of copying it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Codec<Bytes> for Raw {
    fn encode(&self, value: &Bytes, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(value);
        Ok(())
    }

    fn decode(&self, bytes: Bytes) -> Result<Bytes, CodecError> {
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_refuses_other_shapes() {
        let mut out = Vec::new();
        Json.encode(&vec![1_u32, 2, 3], &mut out).unwrap();
        assert_eq!(out, b"[1,2,3]");
        let back: Vec<u32> = Json.decode(Bytes::from(out)).unwrap();
        assert_eq!(back, [1, 2, 3]);
        assert!(Codec::<Vec<u32>>::decode(&Json, Bytes::from_static(b"{\"a\":1}")).is_err());
    }

    #[test]
    fn raw_keeps_the_bytes() {
        let mut out = b"header".to_vec();
        Raw.encode(&Bytes::from_static(b"body"), &mut out).unwrap();
        assert_eq!(out, b"headerbody");
        assert_eq!(
            Raw.decode(Bytes::from_static(b"body")).unwrap(),
            Bytes::from_static(b"body")
        );
    }
}
