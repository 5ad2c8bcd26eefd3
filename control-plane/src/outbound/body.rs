//! Response bodies read with a running byte count: a cap holds whether or not the
//! answer declares its length (a chunked answer is cut off at the cap, not buffered
//! first and measured after).

use super::{OutboundError, describe};
use reqwest::Response;

/// The whole body of `resp`, refused as soon as it passes `cap` bytes.
pub async fn read_capped(mut resp: Response, cap: u64) -> Result<Vec<u8>, OutboundError> {
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(OutboundError::TooLarge(cap));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(describe)? {
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(OutboundError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
