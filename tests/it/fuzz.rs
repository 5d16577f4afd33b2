//! The fuzz targets that drive an in-process ferry (`ferry::fuzzing`): their committed
//! seed corpus passes, and every input that once crashed one stays fixed.

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|f| std::fs::read(f.unwrap().path()).unwrap())
        .collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

#[test]
fn session_frame_seeds_pass() {
    for s in seeds("session_frame") {
        ferry::fuzzing::session_frame(&s);
    }
}

#[test]
fn inbound_record_seeds_pass() {
    for s in seeds("inbound_record") {
        ferry::fuzzing::inbound_record(&s);
    }
}

#[test]
fn offline_handoff_seeds_pass() {
    for s in seeds("offline_handoff") {
        ferry::fuzzing::offline_handoff(&s);
    }
}

#[test]
fn notices_api_seeds_pass() {
    for s in seeds("notices_api") {
        ferry::fuzzing::notices_api(&s);
    }
}
