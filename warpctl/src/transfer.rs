//! `warpctl export ID -o FILE`, `warpctl import FILE` and `warpctl pull
//! HOST:PORT ID`: a session as one self-contained trace file, to replay on
//! another machine.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use warp_proto::warp::{ExportRequest, GetSessionRequest, ImportChunk};

use crate::connect;
use crate::progress::Progress;
use crate::view::{rpc, ViewError};

/// Chunks sent to the daemon: under gRPC's 4 MiB message limit.
const CHUNK: usize = 1 << 20;

/// Writes the session to FILE (through a temporary file beside it, renamed
/// once complete, so a failed export leaves no partial file behind). The
/// bytes are checked against the digest the daemon sends last.
pub async fn export(id: String, file: PathBuf, force: bool) -> Result<u8, ViewError> {
    let to_stdout = file.as_os_str() == "-";
    if !to_stdout && !force && std::fs::symlink_metadata(&file).is_ok() {
        return Err(ViewError::Refused(format!("{} exists; --force replaces it", file.display())));
    }
    let mut daemon = connect::connect_or_start(false).await?;
    let progress = Progress::bytes(format!("exporting {id}"), None);
    let mut stream = daemon.client.export(ExportRequest { id, offset: 0 }).await.map_err(rpc)?.into_inner();
    let mut hasher = blake3::Hasher::new();
    if to_stdout {
        let mut out = std::io::stdout().lock();
        // A reader that went away (`| head -c N`) ends the export quietly
        // with 141, the status a process SIGPIPE killed gives in a shell:
        // what it read is not a whole file.
        let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::BrokenPipe;
        while let Some(chunk) = stream.message().await.map_err(rpc)? {
            hasher.update(&chunk.data);
            progress.add(chunk.data.len() as u64);
            match out.write_all(&chunk.data) {
                Err(e) if gone(&e) => return Ok(141),
                other => other.map_err(ViewError::Output)?,
            }
            check_digest(&chunk.digest, &hasher, "the export")?;
        }
        match out.flush() {
            Err(e) if gone(&e) => return Ok(141),
            other => other.map_err(ViewError::Output)?,
        }
        return Ok(0);
    }
    let tmp = temp_beside(&file);
    let mut out = std::fs::File::create(&tmp).map_err(|e| ViewError::Output(with_path(e, &tmp)))?;
    let result: Result<(), ViewError> = async {
        while let Some(chunk) = stream.message().await.map_err(rpc)? {
            hasher.update(&chunk.data);
            progress.add(chunk.data.len() as u64);
            out.write_all(&chunk.data).map_err(|e| ViewError::Output(with_path(e, &tmp)))?;
            check_digest(&chunk.digest, &hasher, "the export")?;
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

/// The daemon's digest of the whole file (sent last; none in the other
/// messages) against what came.
fn check_digest(digest: &[u8], hasher: &blake3::Hasher, what: &str) -> Result<(), ViewError> {
    if digest.is_empty() || digest == hasher.finalize().as_bytes() {
        return Ok(());
    }
    Err(ViewError::Local(format!("{what} does not match the digest the daemon sent (damaged on the way)")))
}

/// Stores FILE as a new session of the caller's and prints its id.
pub async fn import(file: PathBuf) -> Result<u8, ViewError> {
    let id = import_file(&file).await?;
    println!("{id}");
    Ok(0)
}

/// Sends FILE to the daemon a chunk at a time (never whole in memory) as
/// a new session; its id.
async fn import_file(file: &Path) -> Result<String, ViewError> {
    let (input, size): (Box<dyn Read + Send>, Option<u64>) = if file.as_os_str() == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let f = std::fs::File::open(file).map_err(|e| ViewError::Refused(format!("{}: {e}", file.display())))?;
        let size = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
        (Box::new(f), size)
    };
    let progress = Progress::bytes(format!("importing {}", file.display()), size);
    let sent = progress.counter();
    // A read error ends the stream (the daemon then refuses a cut file)
    // and is what is reported.
    let failed: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
    let chunks = {
        let failed = Arc::clone(&failed);
        let mut input = input;
        std::iter::from_fn(move || {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                match input.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                        return None;
                    }
                }
            }
            buf.truncate(filled);
            sent(filled as u64);
            (filled > 0).then_some(ImportChunk { data: buf })
        })
    };
    let mut daemon = connect::connect_or_start(false).await?;
    let reply = daemon.client.import(tokio_stream::iter(chunks)).await;
    if let Some(e) = failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(ViewError::Refused(format!("{}: {e}", file.display())));
    }
    let reply = reply.map_err(|s| match rpc(s) {
        ViewError::Refused(m) => ViewError::Refused(format!("{}: {m}", file.display())),
        other => other,
    })?;
    Ok(reply.into_inner().id)
}

/// Where a pull keeps what it has fetched so far, so that one cut short
/// goes on from there: `$XDG_CACHE_HOME/warpspeed/pull` (or ~/.cache/...).
fn pull_dir() -> Result<PathBuf, ViewError> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".cache")))
        .ok_or_else(|| ViewError::Local("neither XDG_CACHE_HOME nor HOME is set: nowhere to keep a pull".into()))?;
    let dir = base.join("warpspeed").join("pull");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| ViewError::Local(format!("cannot make {}: {e}", dir.display())))?;
    Ok(dir)
}

/// `warpctl pull HOST:PORT ID`: the remote daemon's export of recording ID,
/// fetched into a file that a pull cut short goes on with, checked against
/// the daemon's digest, then imported here. Prints the local id.
pub async fn pull(remote: crate::remote::Remote, id: String) -> Result<u8, ViewError> {
    let mut daemon = connect::connect_remote(&remote).await?;
    let meta = daemon
        .client
        .get_session(GetSessionRequest { id: id.clone() })
        .await
        .map_err(rpc)?
        .into_inner()
        .meta
        .ok_or_else(|| ViewError::Rpc(format!("no metadata for {id}")))?;
    let safe =
        |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' }).collect::<String>();
    let part = pull_dir()?.join(format!("{}-{}.warp.part", safe(&remote.addr), safe(&meta.id)));
    let local = |e: std::io::Error| ViewError::Local(format!("{}: {e}", part.display()));
    let mut file =
        std::fs::OpenOptions::new().create(true).append(true).read(true).mode(0o600).open(&part).map_err(local)?;
    let offset = file.metadata().map_err(local)?.len();
    if offset > 0 {
        say!("resuming the pull of {} at byte {offset} (kept in {})", meta.id, part.display());
    }
    let mut stream = match daemon.client.export(ExportRequest { id: meta.id.clone(), offset }).await {
        Ok(reply) => reply.into_inner(),
        Err(s) => return Err(rpc(s)),
    };
    let mut digest = Vec::new();
    let progress = Progress::bytes(format!("pulling {} from {}", meta.id, remote.addr), None);
    progress.add(offset);
    loop {
        match stream.message().await {
            Ok(Some(chunk)) => {
                progress.add(chunk.data.len() as u64);
                file.write_all(&chunk.data).map_err(local)?;
                if !chunk.digest.is_empty() {
                    digest = chunk.digest;
                }
            }
            Ok(None) => break,
            Err(s) if s.code() == tonic::Code::OutOfRange => {
                // What is kept is longer than the file: not a piece of it.
                let _ = std::fs::remove_file(&part);
                return Err(ViewError::Local(format!(
                    "what an earlier pull kept ({offset} bytes) is longer than {}'s export: removed it; pull again",
                    meta.id
                )));
            }
            Err(s) => {
                let _ = file.sync_all();
                drop(progress);
                say!(
                    "the pull was cut short: {} bytes kept in {}; pull again to go on",
                    file.metadata().map_or(0, |m| m.len()),
                    part.display()
                );
                return Err(rpc(s));
            }
        }
    }
    drop(progress);
    file.sync_all().map_err(local)?;
    let mut hasher = blake3::Hasher::new();
    {
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(0)).map_err(local)?;
        hasher.update_reader(&mut file).map_err(local)?;
    }
    if digest.is_empty() {
        return Err(ViewError::Rpc(
            "the daemon sent no digest of the export (a warpd older than this warpctl?)".into(),
        ));
    }
    if digest != hasher.finalize().as_bytes() {
        let _ = std::fs::remove_file(&part);
        return Err(ViewError::Local(format!(
            "the pulled file does not match {}'s digest of its export (damaged, or the recording changed since a pull began): removed it; pull again",
            remote.addr
        )));
    }
    drop(file);
    let new_id = import_file(&part).await?;
    let _ = std::fs::remove_file(&part);
    say!("pulled {} from {} ({} bytes) as {new_id}", meta.id, remote.addr, hasher.count());
    println!("{new_id}");
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
