//! Feeds arbitrary bytes to the uwsgi packet decoder. It must never panic, must leave
//! what follows a packet (the body) untouched, and what it decodes must re-encode to the
//! same variables.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/uwsgi/codec.rs"]
mod codec;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    if let Ok(Some(packet)) = codec::decode_packet(&mut buf) {
        let size = usize::from(u16::from_le_bytes([data[1], data[2]]));
        assert_eq!(&buf[..], &data[codec::HEADER_LEN + size..]);
        if packet.modifier1 == codec::MODIFIER_WSGI {
            let vars: Vec<(&[u8], &[u8])> =
                packet.vars.iter().map(|(k, v)| (&k[..], &v[..])).collect();
            let mut encoded = BytesMut::new();
            codec::encode_packet(&mut encoded, 0, packet.modifier2, &vars).unwrap();
            assert_eq!(&encoded[..], &data[..codec::HEADER_LEN + size]);
        }
    }
});
