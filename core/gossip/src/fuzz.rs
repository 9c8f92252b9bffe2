//! The decoding a datagram goes through before the pool acts on it, callable without a running
//! pool: for the fuzz targets (`fuzz/`) and the replay of their corpora in the test suite.

use foca::Codec;

use super::keyring::Keyring;
use super::wire::{self, Bcast, Direct, KIND_DIRECT, KIND_FOCA};

/// `inner` as a peer holding `keys` sends it (sealed with the first key; plaintext without).
pub fn seal(keys: &[Vec<u8>], inner: &[u8]) -> Result<Vec<u8>, String> {
    Ok(Keyring::new(keys)?.seal(inner))
}

/// Opens `data` with a keyring of `keys` (none: plaintext gossip) and decodes what is inside:
/// a point-to-point message, or foca's header and any custom broadcast after it. An error is
/// a refused packet; a panic or a hang is a bug.
pub fn datagram(keys: &[Vec<u8>], data: &[u8]) -> Result<(), String> {
    let ring = Keyring::new(keys)?;
    let inner = ring.open(data).map_err(|e| e.describe())?;
    let Some((&kind, body)) = inner.split_first() else { return Err("empty".into()) };
    match kind {
        KIND_DIRECT => wire::decode::<Direct>(body).map(drop),
        KIND_FOCA => {
            let mut buf = body;
            let mut codec = foca::PostcardCodec;
            let _: foca::Header<wire::NodeId> = codec.decode_header(&mut buf).map_err(|e| e.to_string())?;
            while !buf.is_empty() {
                let member: Result<foca::Member<wire::NodeId>, _> = codec.decode_member(&mut buf);
                match member {
                    Ok(_) => {}
                    Err(_) => return wire::decode::<Bcast>(buf).map(drop),
                }
            }
            Ok(())
        }
        other => Err(format!("unknown kind {other}")),
    }
}
