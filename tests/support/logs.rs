//! Capturing what a `tracing` subscriber writes, to check that no secret is ever logged, and
//! the events themselves, to check what they say.

use std::{
    collections::BTreeMap,
    fmt, io,
    sync::{Arc, Mutex},
};

use tracing::{
    Level, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    fmt::MakeWriter,
    layer::{Context, Layer},
};

/// Everything a fmt subscriber writes, kept in memory: give a clone to
/// `tracing_subscriber::fmt().with_writer(..)`, read it with [`text`](Self::text).
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// What was written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// What was written so far, emptying the capture.
    pub fn take(&self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut *self.0.lock().unwrap())).into_owned()
    }
}

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// One event as a subscriber saw it: its level, its target and its fields (the message under
/// `message`), strings as recorded and every other value in its `Debug` form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub level: Level,
    pub target: String,
    pub fields: BTreeMap<String, String>,
}

/// A layer keeping every event it sees: `tracing_subscriber::registry().with(events.clone())`,
/// read them with [`take`](Self::take).
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<Recorded>>>);

impl Events {
    /// The events recorded so far, emptying the record.
    pub fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl<S: Subscriber> Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        struct Fields<'a>(&'a mut BTreeMap<String, String>);
        impl Visit for Fields<'_> {
            fn record_str(&mut self, field: &Field, value: &str) {
                self.0.insert(field.name().to_owned(), value.to_owned());
            }
            fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
        }
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Recorded {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            fields,
        });
    }
}
