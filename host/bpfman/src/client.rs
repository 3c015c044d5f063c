//! [`BpfmanClient`]: the `bpfman.v1` calls, blocking, over bpfman-rpc's unix
//! socket.

use std::{
    future::Future,
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::runtime::Runtime;
use tonic::{transport::Channel, Code, Status};
use tracing::debug;

use crate::{
    types::{self, Hook, Image, ListFilter, LoadSpec, Program},
    wire::{self, bpfman_client::BpfmanClient as Rpc},
    BpfmanError,
};

/// bpfman-rpc's default socket.
pub const DEFAULT_SOCKET: &str = "/run/bpfman-sock/bpfman.sock";

/// How long a call may take by default. Loading from an image includes
/// bpfman's pull.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A blocking client of bpfman's `bpfman.v1` API.
///
/// Every method **blocks** the calling thread until bpfman answers (or the
/// call timeout passes): the client owns a small current-thread tokio
/// runtime and runs each call on it. Call it from a plain thread or from
/// `tokio::task::spawn_blocking`; called from an async task it panics
/// (tokio refuses to block a thread that drives a runtime).
///
/// The connection is made on first use and remade after bpfman restarts,
/// so a client outlives the daemon it talks to.
pub struct BpfmanClient {
    socket: PathBuf,
    timeout: Duration,
    rpc: Rpc<Channel>,
    /// `Some` until dropped (see the `Drop` impl).
    rt: Option<Runtime>,
}

/// A client may be dropped on an async thread (afxdp-dp's shutdown drops
/// its program managers there): its runtime is shut down in the
/// background, never waited for.
impl Drop for BpfmanClient {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for BpfmanClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpfmanClient")
            .field("socket", &self.socket)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl BpfmanClient {
    /// A client of the bpfman-rpc listening on `socket`; no I/O until the
    /// first call. Each call gives up after `timeout`.
    ///
    /// # Errors
    /// [`BpfmanError::Runtime`] when the runtime cannot be made.
    pub fn new(socket: impl AsRef<Path>, timeout: Duration) -> Result<Self, BpfmanError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(BpfmanError::Runtime)?;
        let socket = socket.as_ref().to_path_buf();
        let channel = {
            let _in_rt = rt.enter();
            afxdp_proto::unix::connect_lazy(&socket)
        };
        Ok(Self {
            socket,
            timeout,
            rpc: Rpc::new(channel),
            rt: Some(rt),
        })
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Loads `spec.function` of `spec.bytecode`.
    ///
    /// # Errors
    /// bpfman down ([`BpfmanError::Unavailable`]), or its refusal
    /// ([`BpfmanError::Refused`]: file or image missing, pull failed,
    /// verifier rejection, no such function), with bpfman's message.
    pub fn load(&self, spec: &LoadSpec) -> Result<Program, BpfmanError> {
        let target = format!("{} of {}", spec.function, spec.bytecode);
        let req = wire::LoadRequest::from(spec);
        let resp = self.call("Load", &target, |mut c| async move { c.load(req).await })?;
        let first = resp
            .programs
            .into_iter()
            .next()
            .ok_or(BpfmanError::Malformed {
                call: "Load",
                missing: "programs",
            })?;
        types::program("Load", first.info, first.kernel_info)
    }

    /// Attaches the loaded program `id` at `hook`; returns the link id.
    ///
    /// # Errors
    /// bpfman down, or its refusal (no such interface, the kernel refused
    /// the attach), with bpfman's message.
    pub fn attach(&self, id: u32, hook: &Hook) -> Result<u32, BpfmanError> {
        let target = format!("program {id} to {hook}");
        let req = wire::AttachRequest {
            id,
            attach: Some(hook.into()),
        };
        let resp = self.call(
            "Attach",
            &target,
            |mut c| async move { c.attach(req).await },
        )?;
        Ok(resp.link_id)
    }

    /// Detaches link `link_id`.
    ///
    /// # Errors
    /// bpfman down, or its refusal (unknown link).
    pub fn detach(&self, link_id: u32) -> Result<(), BpfmanError> {
        let req = wire::DetachRequest { link_id };
        self.call("Detach", &format!("link {link_id}"), |mut c| async move {
            c.detach(req).await
        })?;
        Ok(())
    }

    /// Unloads program `id` (bpfman detaches its links first).
    ///
    /// # Errors
    /// bpfman down, or its refusal (unknown program).
    pub fn unload(&self, id: u32) -> Result<(), BpfmanError> {
        let req = wire::UnloadRequest { id };
        self.call("Unload", &format!("program {id}"), |mut c| async move {
            c.unload(req).await
        })?;
        Ok(())
    }

    /// The programs matching `filter`.
    ///
    /// # Errors
    /// bpfman down, or a malformed answer.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<Program>, BpfmanError> {
        let req = wire::ListRequest::from(filter);
        let resp = self.read("List", "programs", |mut c| {
            let req = req.clone();
            async move { c.list(req).await }
        })?;
        resp.results
            .into_iter()
            .map(|r| types::program("List", r.info, r.kernel_info))
            .collect()
    }

    /// Program `id`.
    ///
    /// # Errors
    /// bpfman down, or its refusal (no such program).
    pub fn get(&self, id: u32) -> Result<Program, BpfmanError> {
        let req = wire::GetRequest { id };
        let resp = self.read("Get", &format!("program {id}"), |mut c| async move {
            c.get(req).await
        })?;
        types::program("Get", resp.info, resp.kernel_info)
    }

    /// Has bpfman pull `image` now, for a later load.
    ///
    /// # Errors
    /// bpfman down, or the pull failed (unreachable registry, no such image,
    /// refused credentials), with bpfman's message.
    pub fn pull_bytecode(&self, image: &Image) -> Result<(), BpfmanError> {
        let req = wire::PullBytecodeRequest {
            image: Some(image.into()),
        };
        self.call(
            "PullBytecode",
            &format!("image {}", image.url),
            |mut c| async move { c.pull_bytecode(req).await },
        )?;
        Ok(())
    }

    /// [`Self::call`] for calls that change nothing (`List`, `Get`): asked
    /// once more when the connection was found broken, which is how the
    /// first call after a restart of bpfman learns of it. Calls that change
    /// something are not repeated: the first one may have been done.
    fn read<T, F, Fut>(&self, call: &'static str, target: &str, f: F) -> Result<T, BpfmanError>
    where
        F: Fn(Rpc<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        match self.call(call, target, &f) {
            Err(BpfmanError::Unavailable { message, .. }) => {
                debug!(call, message, "bpfman connection broken; asking again");
                self.call(call, target, &f)
            }
            other => other,
        }
    }

    /// Runs one RPC on the client's runtime, bounded by the call timeout,
    /// and maps its failure.
    fn call<T, F, Fut>(&self, call: &'static str, target: &str, f: F) -> Result<T, BpfmanError>
    where
        F: FnOnce(Rpc<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        debug!(call, target, socket = %self.socket.display(), "bpfman call");
        let fut = f(self.rpc.clone());
        // The timer is made inside the runtime (it needs its time driver).
        let bounded = async { tokio::time::timeout(self.timeout, fut).await };
        let rt = self.rt.as_ref().expect("the runtime lives until drop");
        match rt.block_on(bounded) {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(self.status_error(call, target, &status)),
            Err(_) => Err(BpfmanError::Timeout {
                call,
                target: target.to_string(),
                timeout: self.timeout,
            }),
        }
    }

    fn status_error(&self, call: &'static str, target: &str, status: &Status) -> BpfmanError {
        let message = error_chain(status);
        if status.code() == Code::Unavailable || is_transport(status) {
            return BpfmanError::Unavailable {
                socket: self.socket.clone(),
                message,
            };
        }
        BpfmanError::Refused {
            call,
            target: target.to_string(),
            code: status.code(),
            message,
        }
    }
}

/// Whether the call failed in the transport (the connection broke: bpfman
/// went away mid-call or since the last one) rather than in bpfman.
fn is_transport(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::transport::Error>() || e.is::<std::io::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// The status message followed by its sources (the transport error of a
/// connection that failed says why only in its sources).
fn error_chain(status: &Status) -> String {
    let mut text = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_daemon_is_unavailable_naming_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bpfman.sock");
        let client = BpfmanClient::new(&socket, Duration::from_secs(5)).unwrap();
        let err = client.get(1).expect_err("no daemon");
        assert!(matches!(err, BpfmanError::Unavailable { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&socket.display().to_string()), "{msg}");
        assert!(msg.contains("is bpfman-rpc running?"), "{msg}");
    }
}
