//! The progress bar of long scans: files and bytes scanned and the current
//! input, on stderr, only when stderr is a terminal.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dragonfly_engine::FileObserver;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::logging::printable;

/// The bar and its counters; does nothing when not shown.
pub struct Progress {
    bar: Option<ProgressBar>,
    files: Arc<AtomicU64>,
    inputs: usize,
    current: AtomicUsize,
}

impl Progress {
    /// A progress display for `inputs` inputs: shown when `wanted` and
    /// stderr is a terminal.
    pub fn new(wanted: bool, inputs: usize) -> Progress {
        let shown = wanted && std::io::stderr().is_terminal();
        Progress::to(shown.then(ProgressDrawTarget::stderr), inputs)
    }

    /// A progress display drawn to `target`, if any.
    fn to(target: Option<ProgressDrawTarget>, inputs: usize) -> Progress {
        let bar = target.map(|target| {
            let bar = ProgressBar::with_draw_target(None, target);
            let style = ProgressStyle::with_template(
                "{spinner} [{prefix}] {msg} files, {binary_bytes} scanned ({binary_bytes_per_sec}), {elapsed}",
            )
            .expect("a valid template");
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress { bar, files: Arc::new(AtomicU64::new(0)), inputs, current: AtomicUsize::new(0) }
    }

    /// What the engine tells of each scanned file, when the bar is shown.
    pub fn observer(&self) -> Option<FileObserver> {
        let bar = self.bar.clone()?;
        let files = Arc::clone(&self.files);
        Some(FileObserver::new(move |bytes| {
            let n = files.fetch_add(1, Ordering::Relaxed) + 1;
            bar.inc(bytes);
            bar.set_message(n.to_string());
        }))
    }

    /// Shows that `input` is being scanned.
    pub fn start(&self, input: &str) {
        let n = self.current.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            bar.set_prefix(format!("{n}/{} {}", self.inputs, printable(input, 80)));
        }
    }

    /// Shows that `url` is being downloaded.
    pub fn downloading(&self, url: &str) {
        if let Some(bar) = &self.bar {
            let name = url.rsplit('/').next().unwrap_or(url);
            let n = self.current.load(Ordering::Relaxed);
            bar.set_prefix(format!("{n}/{} downloading {}", self.inputs, printable(name, 80)));
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    /// An error that ends the scan early leaves no bar behind.
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_progress_observes_nothing() {
        let progress = Progress::to(None, 2);
        assert!(progress.observer().is_none());
        progress.start("a");
        progress.finish();
    }

    #[test]
    fn shown_progress_counts_files_and_bytes() {
        let progress = Progress::to(Some(ProgressDrawTarget::hidden()), 2);
        let observer = progress.observer().expect("an observer when shown");
        progress.start("pkg-1.0.tar.gz");
        let bar = progress.bar.clone().unwrap();
        observer.notify(100);
        observer.notify(23);
        assert_eq!(
            (bar.position(), bar.message(), bar.prefix()),
            (123, "2".to_owned(), "1/2 pkg-1.0.tar.gz".to_owned())
        );
        progress.finish();
        assert!(bar.is_finished());
    }
}
