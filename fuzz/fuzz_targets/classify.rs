#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wirestream_proto::testing::fuzz::classify(data));
