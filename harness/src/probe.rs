//! Probes of this process, read from `/proc/self`.

use std::io;

/// The number of file descriptors this process has open, from `/proc/self/fd`.
///
/// # Errors
///
/// Fails where `/proc/self/fd` cannot be read (not Linux, say).
pub fn open_fds() -> io::Result<usize> {
    // The directory handle used to list it is itself one open descriptor:
    // leave it out of the count.
    Ok(std::fs::read_dir("/proc/self/fd")?
        .count()
        .saturating_sub(1))
}

/// Resident memory of this process in bytes, from `/proc/self/statm`.
///
/// # Errors
///
/// Fails where `/proc/self/statm` cannot be read or parsed.
pub fn resident_bytes() -> io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/self/statm"))?;
    Ok(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test, so that no other test thread of this binary opens or closes a
    // descriptor while this one counts.
    #[test]
    fn an_opened_file_shows_in_the_count_and_leaves_it_when_closed() {
        assert!(resident_bytes().unwrap() > 0);
        let before = open_fds().unwrap();
        let file = std::fs::File::open("Cargo.toml").unwrap();
        assert_eq!(open_fds().unwrap(), before + 1);
        drop(file);
        assert_eq!(open_fds().unwrap(), before);
    }
}
