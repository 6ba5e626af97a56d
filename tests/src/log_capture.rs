//! Captures every log line of the test binary, so a test can prove what never reaches a log
//! (a secret, a token). The subscriber is global: lines of tests running at the same time land
//! in the same buffer, which only makes "never appears" assertions stricter.

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static BUFFER: OnceLock<Buffer> = OnceLock::new();

/// Installs the capturing subscriber (once per test binary), at every level.
pub fn install() {
    BUFFER.get_or_init(|| {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        buffer
    });
}

/// Everything logged since [`install`].
pub fn captured() -> String {
    BUFFER
        .get()
        .map(|buffer| {
            String::from_utf8_lossy(
                &buffer
                    .0
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            )
            .into_owned()
        })
        .unwrap_or_default()
}
