//! Kubelet's plugin registration (`pluginregistration` v1): a socket in
//! kubelet's `plugins_registry` directory answering `GetInfo` with the
//! driver's name and its CSI endpoint. Kubelet watches that directory (and
//! scans it again when it restarts), calls `GetInfo`, connects to the
//! endpoint (`NodeGetInfo`) and reports back with `NotifyRegistrationStatus`.

use std::path::{Path, PathBuf};

use tonic::{Request, Response, Status};

use afxdp_proto::pluginregistration::{self as reg, registration_server::Registration};

use super::DRIVER;

/// The CSI versions the node service speaks.
pub const SUPPORTED_VERSIONS: &[&str] = &["1.0.0"];

/// The registration socket's path in `registry_dir`: `csi.afxdp.io@reg.sock`.
///
/// Why the `@`: the kubelet dials registration sockets by their bare path,
/// so grpc-go sends the path, percent-encoded, as the `:authority` header
/// (`%2Fvar%2Flib%2Fkubelet%2F...`, kubernetes/kubernetes#108254), which h2
/// (tonic's HTTP/2) refuses as a malformed authority (`PROTOCOL_ERROR`):
/// a `%` is allowed only in an authority's userinfo. With an `@` in the file
/// name, everything before it is that userinfo and `reg.sock` the host, a
/// valid authority. The name is only found by the kubelet's directory watch;
/// the driver's name comes from `GetInfo`.
pub fn socket_in(registry_dir: &Path) -> PathBuf {
    registry_dir.join(format!("{DRIVER}@reg.sock"))
}

/// The registration service: names the driver and where it listens.
#[derive(Debug, Clone)]
pub struct RegistrationService {
    /// The CSI socket as kubelet sees it (a host path).
    pub endpoint: PathBuf,
}

#[tonic::async_trait]
impl Registration for RegistrationService {
    async fn get_info(
        &self,
        _: Request<reg::InfoRequest>,
    ) -> Result<Response<reg::PluginInfo>, Status> {
        Ok(Response::new(reg::PluginInfo {
            r#type: reg::CSI_PLUGIN.to_string(),
            name: DRIVER.to_string(),
            endpoint: self.endpoint.display().to_string(),
            supported_versions: SUPPORTED_VERSIONS.iter().map(|v| v.to_string()).collect(),
        }))
    }

    async fn notify_registration_status(
        &self,
        req: Request<reg::RegistrationStatus>,
    ) -> Result<Response<reg::RegistrationStatusResponse>, Status> {
        let s = req.into_inner();
        if s.plugin_registered {
            tracing::info!(driver = DRIVER, "kubelet registered the CSI driver");
        } else {
            tracing::error!(driver = DRIVER, error = %s.error, "kubelet refused the CSI driver");
        }
        Ok(Response::new(reg::RegistrationStatusResponse {}))
    }
}
