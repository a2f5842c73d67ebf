//! `warpctl export ID -o FILE` and `warpctl import FILE`: a session as one
//! self-contained trace file, to replay on another machine.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use warp_proto::warp::{ExportRequest, ImportChunk};

use crate::connect;
use crate::view::{rpc, ViewError};

/// Chunks sent to the daemon: under gRPC's 4 MiB message limit.
const CHUNK: usize = 1 << 20;

/// Writes the session to FILE (through a temporary file beside it, renamed
/// once complete, so a failed export leaves no partial file behind).
pub async fn export(id: String, file: PathBuf, force: bool) -> Result<u8, ViewError> {
    let to_stdout = file.as_os_str() == "-";
    if !to_stdout && !force && std::fs::symlink_metadata(&file).is_ok() {
        return Err(ViewError::Refused(format!("{} exists; --force replaces it", file.display())));
    }
    let mut daemon = connect::connect_or_start(false).await?;
    let mut stream = daemon.client.export(ExportRequest { id }).await.map_err(rpc)?.into_inner();
    if to_stdout {
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = stream.message().await.map_err(rpc)? {
            out.write_all(&chunk.data).map_err(ViewError::Output)?;
        }
        out.flush().map_err(ViewError::Output)?;
        return Ok(0);
    }
    let tmp = temp_beside(&file);
    let mut out = std::fs::File::create(&tmp).map_err(|e| ViewError::Output(with_path(e, &tmp)))?;
    let result: Result<(), ViewError> = async {
        while let Some(chunk) = stream.message().await.map_err(rpc)? {
            out.write_all(&chunk.data).map_err(|e| ViewError::Output(with_path(e, &tmp)))?;
        }
        out.sync_all().map_err(|e| ViewError::Output(with_path(e, &tmp)))?;
        std::fs::rename(&tmp, &file).map_err(|e| ViewError::Output(with_path(e, &file)))?;
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| 0)
}

/// Stores FILE as a new session of the caller's and prints its id.
pub async fn import(file: PathBuf) -> Result<u8, ViewError> {
    let mut input = std::fs::File::open(&file).map_err(|e| ViewError::Refused(format!("{}: {e}", file.display())))?;
    let mut chunks = Vec::new();
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            match input.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ViewError::Refused(format!("{}: {e}", file.display()))),
            }
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        chunks.push(ImportChunk { data: buf });
    }
    let mut daemon = connect::connect_or_start(false).await?;
    let reply = daemon.client.import(tokio_stream::iter(chunks)).await.map_err(|s| match rpc(s) {
        ViewError::Refused(m) => ViewError::Refused(format!("{}: {m}", file.display())),
        other => other,
    })?;
    println!("{}", reply.into_inner().id);
    Ok(0)
}

fn temp_beside(file: &Path) -> PathBuf {
    let mut name = file.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".partial-{}", std::process::id()));
    file.with_file_name(name)
}

fn with_path(e: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
