//! Telemetry: the process's logging set-up (filter, format, the writer thread) and the log's
//! clock. The command line calls [`init_logging`] once at start-up.

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// How log lines are written: `text` for people, `json` for machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The log's clock: UTC to the microsecond, as tracing-subscriber's default clock writes it
/// (`2026-12-02T04:45:30.874097Z`), but with the date and time of day formatted once a second
/// per thread rather than for every line (it was a quarter of a request line's cost).
struct LogClock;

impl FormatTime for LogClock {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        thread_local! {
            static SECOND: std::cell::RefCell<(i64, String)> =
                const { std::cell::RefCell::new((i64::MIN, String::new())) };
        }
        let now = chrono::Utc::now();
        let second = now.timestamp();
        let mut micros = [b'0'; 6];
        let mut rest = now.timestamp_subsec_micros() % 1_000_000;
        for digit in micros.iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        SECOND.with_borrow_mut(|(cached, text)| {
            if *cached != second {
                *cached = second;
                *text = now.format("%Y-%m-%dT%H:%M:%S").to_string();
            }
            w.write_str(text)?;
            w.write_char('.')?;
            w.write_str(std::str::from_utf8(&micros).unwrap_or("000000"))?;
            w.write_char('Z')
        })
    }
}

/// Log lines are formatted where they happen and written by a thread of their own, in batches:
/// one `write` per batch rather than per line took the request log from a quarter of a page-1
/// listing's cost to a few percent (docs/BENCHMARKS.md). Lines are never dropped (a full queue
/// makes the logging thread wait); the returned guard writes what is left when it is dropped.
pub fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONTACTSD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::new(std::io::stderr()));
    // Colours only for a person at a terminal, never into a log file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_timer(LogClock)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    guard
}
