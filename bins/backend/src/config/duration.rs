//! Durations as flags (`--access-token-ttl 15m`) and as file values (`"15m"` or `900`).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub use crate::duration::parse_duration;

/// serde `deserialize_with` for an optional duration: an integer number of seconds or a
/// string accepted by [`parse_duration`].
pub(super) fn de_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Secs(s)) => Ok(Some(Duration::from_secs(s))),
        Some(Raw::Text(t)) => parse_duration(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}
