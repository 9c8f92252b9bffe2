//! The decoding a datagram goes through before the pool acts on it, callable without a running
//! pool: for the fuzz targets (`fuzz/`) and the replay of their corpora in the test suite.

use foca::Codec;

use super::keyring::Keyring;
use super::wire::{self, Bcast, Direct, KIND_DIRECT, KIND_FOCA};
use super::GossipError;

/// `inner` as a peer holding `keys` sends it (sealed with the first key; plaintext without).
pub fn seal(keys: &[Vec<u8>], inner: &[u8]) -> Result<Vec<u8>, GossipError> {
    Ok(Keyring::new(keys)?.seal(inner))
}

/// Opens `data` with a keyring of `keys` (none: plaintext gossip) and decodes what is inside:
/// a point-to-point message, or foca's header and any custom broadcast after it. An error is
/// a refused packet; a panic or a hang is a bug.
pub fn datagram(keys: &[Vec<u8>], data: &[u8]) -> Result<(), GossipError> {
    let ring = Keyring::new(keys)?;
    let inner = ring.open(data).map_err(|e| GossipError::Packet(e.describe().to_string()))?;
    let Some((&kind, body)) = inner.split_first() else { return Err(GossipError::Packet("empty".into())) };
    let packet = |e: bincode::Error| GossipError::Packet(e.to_string());
    match kind {
        KIND_DIRECT => wire::decode::<Direct>(body).map(drop).map_err(packet),
        KIND_FOCA => {
            let mut buf = body;
            let mut codec = foca::PostcardCodec;
            let _: foca::Header<wire::NodeId> =
                codec.decode_header(&mut buf).map_err(|e| GossipError::Packet(e.to_string()))?;
            while !buf.is_empty() {
                let member: Result<foca::Member<wire::NodeId>, _> = codec.decode_member(&mut buf);
                match member {
                    Ok(_) => {}
                    Err(_) => return wire::decode::<Bcast>(buf).map(drop).map_err(packet),
                }
            }
            Ok(())
        }
        other => Err(GossipError::Packet(format!("unknown kind {other}"))),
    }
}
