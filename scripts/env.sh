# Sourced by the project's scripts: one place for the environment every step needs.
export PATH="$HOME/.cargo/bin:$PATH"
# Mesa's Vulkan loader complains on stderr when this is unset (harmless, but noisy).
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ]; then
  export XDG_RUNTIME_DIR=/tmp/bilevel-xdg-$(id -u)
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi

# The wasm32 build environment (../shared/TOOLCHAIN.md): Debian's rustc-web with the standard
# library built from source. Run wasm builds as `wasm_env trunk build --release`.
wasm_env() {
  env PATH="/usr/bin:$HOME/.cargo/bin:$PATH" RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_abort \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld CARGO_TARGET_DIR="${BILEVEL_WASM_TARGET_DIR:-target/wasm}" "$@"
}
