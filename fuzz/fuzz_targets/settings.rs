#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wandb_fuzzing::settings(data));
