//! Stage handles: what `spawn()` of every stage returns.
//!
//! A stage runs on a thread of its own (CPU- or disk-bound: input, ingest, CSV) or as a tokio
//! task (the sink). Either way its handle can be awaited ([`StageHandle::finished`], cancel-safe,
//! for the drain phase) and then [`StageHandle::wait`]ed for its result, which keeps three
//! endings apart: the stage could not be started, it panicked, or it returned its own error.

use std::fmt;
use std::future::Future;

use tokio::sync::oneshot;

/// How a stage ended without a result of its own: it could not be started, or it panicked.
#[derive(Debug, thiserror::Error)]
pub enum StageFault {
    #[error("the {stage} stage could not be started: {source}")]
    Spawn {
        stage: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the {stage} stage panicked: {message}")]
    Panic {
        stage: &'static str,
        message: String,
    },
}

/// How a stage ended other than with its result.
#[derive(Debug, thiserror::Error)]
pub enum StageError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Fault(#[from] StageFault),
    /// The stage's own error.
    #[error(transparent)]
    Failed(E),
}

enum Running<T> {
    Thread(std::thread::JoinHandle<T>),
    Task(tokio::task::JoinHandle<T>),
    NotStarted(std::io::Error),
}

/// A running stage. Dropping it detaches the stage.
pub struct StageHandle<T, E> {
    stage: &'static str,
    running: Running<Result<T, E>>,
    /// Resolves (sent or dropped) when the stage's body returns or unwinds.
    exited: Option<oneshot::Receiver<()>>,
}

impl<T, E> fmt::Debug for StageHandle<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StageHandle")
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

impl<T, E> StageHandle<T, E>
where
    T: Send + 'static,
    E: std::error::Error + Send + 'static,
{
    /// Runs `body` on a thread named `re_dms-<stage>`.
    pub fn thread<F>(stage: &'static str, body: F) -> Self
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("re_dms-{stage}"))
            .spawn(move || {
                let _exit = tx; // dropped on return and on unwind alike
                                // Every log line of the stage carries its name.
                let _span = tracing::info_span!("stage", stage).entered();
                body()
            });
        Self {
            stage,
            running: match spawned {
                Ok(h) => Running::Thread(h),
                Err(e) => Running::NotStarted(e),
            },
            exited: Some(rx),
        }
    }

    /// Runs `body` as a tokio task.
    pub fn task<F>(stage: &'static str, body: F) -> Self
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let span = tracing::info_span!("stage", stage);
        let h = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let _exit = tx;
                body.await
            },
            span,
        ));
        Self {
            stage,
            running: Running::Task(h),
            exited: Some(rx),
        }
    }

    pub fn name(&self) -> &'static str {
        self.stage
    }

    /// Completes when the stage has ended (at once if it never started). Cancel-safe.
    pub async fn finished(&mut self) {
        if let Some(rx) = self.exited.as_mut() {
            let _ = rx.await;
            self.exited = None;
        }
    }

    pub fn is_finished(&self) -> bool {
        match &self.running {
            Running::Thread(h) => h.is_finished(),
            Running::Task(h) => h.is_finished(),
            Running::NotStarted(_) => true,
        }
    }

    /// The stage's result, once it has ended.
    pub async fn wait(mut self) -> Result<T, StageError<E>> {
        self.finished().await;
        let stage = self.stage;
        let joined = match self.running {
            Running::NotStarted(source) => return Err(StageFault::Spawn { stage, source }.into()),
            // The thread has left its body: joining does not block for long.
            Running::Thread(h) => h.join().map_err(|p| panic_message(p.as_ref())),
            Running::Task(h) => h.await.map_err(|e| match e.try_into_panic() {
                Ok(p) => panic_message(p.as_ref()),
                Err(e) => e.to_string(),
            }),
        };
        match joined {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StageError::Failed(e)),
            Err(message) => Err(StageFault::Panic { stage, message }.into()),
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("own error")]
    struct Own;

    #[tokio::test]
    async fn a_panic_and_the_stage_error_are_told_apart() {
        let ok = StageHandle::<u8, Own>::thread("ok", || Ok(7));
        assert_eq!(ok.wait().await.unwrap(), 7);
        let own = StageHandle::<u8, Own>::thread("own", || Err(Own));
        assert!(matches!(own.wait().await, Err(StageError::Failed(Own))));
        let panicked = StageHandle::<u8, Own>::thread("boom", || panic!("kaboom"));
        match panicked.wait().await {
            Err(StageError::Fault(StageFault::Panic { stage, message })) => {
                assert_eq!((stage, message.as_str()), ("boom", "kaboom"));
            }
            other => panic!("{other:?}"),
        }
        let task = StageHandle::<u8, Own>::task("task", async { panic!("in a task") });
        assert!(matches!(
            task.wait().await,
            Err(StageError::Fault(StageFault::Panic { .. }))
        ));
    }
}
