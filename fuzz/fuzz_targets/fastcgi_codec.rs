//! Feeds arbitrary bytes to the FastCGI decoder as a connection would: records off a
//! buffer, then parameter streams, BEGIN_REQUEST bodies and GET_VALUES queries. It must
//! never panic, never loop, and what it decodes must re-encode to the same pairs.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/fastcgi/codec.rs"]
mod codec;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut params = BytesMut::new();
    while let Ok(Some(record)) = codec::decode_record(&mut buf) {
        match record.kind {
            codec::PARAMS => params.extend_from_slice(&record.content),
            codec::BEGIN_REQUEST => {
                let _ = codec::parse_begin_request(&record.content);
            }
            codec::GET_VALUES => {
                let mut out = BytesMut::new();
                let limits = codec::Limits {
                    max_conns: 1,
                    max_reqs: 1,
                };
                if codec::encode_get_values_result(&mut out, &record.content, limits).is_ok() {
                    let answer = codec::decode_record(&mut out).unwrap().unwrap();
                    codec::parse_pairs(&answer.content).unwrap();
                }
            }
            _ => {}
        }
    }
    // The raw input as a parameter stream too, then the round trip.
    for stream in [params.freeze(), Bytes::copy_from_slice(data)] {
        if let Ok(pairs) = codec::parse_pairs(&stream) {
            let mut encoded = BytesMut::new();
            for (name, value) in &pairs {
                codec::encode_pair(&mut encoded, name, value);
            }
            assert_eq!(codec::parse_pairs(&encoded.freeze()).unwrap(), pairs);
        }
    }
});
