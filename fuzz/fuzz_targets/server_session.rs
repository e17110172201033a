#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wirestream_model::fuzz::server_session(data));
