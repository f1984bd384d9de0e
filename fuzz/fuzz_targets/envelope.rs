#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wandb_fuzzing::envelope(data));
