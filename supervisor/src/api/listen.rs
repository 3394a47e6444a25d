//! Creating the listeners: the Unix socket (directory, stale socket, mode)
//! and the optional TCP one (loopback unless told otherwise).
use super::ApiError;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;

/// The socket is reachable by the owner and its group; authorisation is
/// still per connection, by peer credentials.
const SOCKET_MODE: u32 = 0o660;
/// A directory we create holds nothing anyone else should list.
const DIR_MODE: u32 = 0o700;

/// Std listeners, so binding needs no runtime; `run` hands them to tokio.
pub(crate) fn bind_unix(path: &Path) -> Result<std::os::unix::net::UnixListener, ApiError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(|source| ApiError::SocketDir {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // A live daemon answers connect(); a dead one left a file that
            // refuses it, which is ours to replace.
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(ApiError::SocketInUse {
                        path: path.to_path_buf(),
                    })
                }
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path).map_err(|source| ApiError::RemoveStale {
                        path: path.to_path_buf(),
                        source,
                    })?;
                }
                Err(source) => {
                    return Err(ApiError::BindUnix {
                        path: path.to_path_buf(),
                        source,
                    })
                }
            }
        }
        Ok(_) => {
            return Err(ApiError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ApiError::BindUnix {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    let bind_err = |source| ApiError::BindUnix {
        path: path.to_path_buf(),
        source,
    };
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(
        |source| ApiError::SocketMode {
            path: path.to_path_buf(),
            source,
        },
    )?;
    Ok(listener)
}

pub(crate) fn bind_tcp(
    addr: std::net::SocketAddr,
    allow_non_loopback: bool,
) -> Result<std::net::TcpListener, ApiError> {
    if !addr.ip().is_loopback() && !allow_non_loopback {
        return Err(ApiError::NonLoopback { addr });
    }
    let std_listener =
        std::net::TcpListener::bind(addr).map_err(|source| ApiError::BindTcp { addr, source })?;
    std_listener
        .set_nonblocking(true)
        .map_err(|source| ApiError::BindTcp { addr, source })?;
    Ok(std_listener)
}
