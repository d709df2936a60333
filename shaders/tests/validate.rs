//! Every WGSL file parses and validates with naga (the same front end wgpu uses), so a shader
//! error fails `cargo test` on a machine without any GPU.

#[test]
fn every_wgsl_file_parses_and_validates() {
    for (name, source) in bilevel_shaders::ALL {
        let module = naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(!module.entry_points.is_empty(), "{name} has no entry point");
    }
}

#[test]
fn every_wgsl_file_is_listed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    // common.wgsl, reg.wgsl and tiled.wgsl are helpers appended to the kernel files, not modules.
    for f in on_disk.iter().filter(|f| !matches!(f.as_str(), "common.wgsl" | "reg.wgsl" | "tiled.wgsl")) {
        assert!(bilevel_shaders::ALL.iter().any(|(n, _)| n == f), "{f} is not in bilevel_shaders::ALL");
    }
}
