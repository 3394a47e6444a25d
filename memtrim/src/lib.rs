//! One routine shared by the jailer's waiting parent and agentd, so the
//! per-jail resident overhead stays small. Every `unsafe` of this crate is
//! here, each with its SAFETY comment.
#![cfg(target_os = "linux")]

/// Give back memory a process no longer needs while it waits: the resident
/// pages of the executable's read-only segments (code and constants used
/// once at start-up, clean copies of the file) and free heap. Pages touched
/// again later fault back in from the page cache. Best effort.
pub fn release_idle_memory() {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| usize::try_from(p).ok())
        .unwrap_or(4096);
    let Some((bias, phdrs)) = executable() else {
        return;
    };
    for p in phdrs
        .iter()
        .filter(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_W == 0)
    {
        let (Ok(vaddr), Ok(memsz)) = (usize::try_from(p.p_vaddr), usize::try_from(p.p_memsz))
        else {
            continue;
        };
        // Whole pages inside the segment only, so no page of a writable
        // segment (relocated data, RELRO) is ever touched.
        let start = (bias + vaddr).div_ceil(page) * page;
        let end = (bias + vaddr + memsz) / page * page;
        if end > start {
            // SAFETY: [start, end) lies in a PT_LOAD segment without PF_W: a
            // private, read-only file mapping that no one has written (the
            // dynamic linker writes only to writable segments). MADV_DONTNEED
            // drops its page-table entries and any later access refaults the
            // identical bytes from the file, so no live Rust value changes.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }
    // musl has no malloc_trim; the musl builds of the jailer and agentd use a
    // TLSF pool (rlsf) that keeps its pages, tens of KB for these two.
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes the allocator's own locks and only returns
    // pages of free chunks to the kernel; no live allocation is touched.
    unsafe {
        libc::malloc_trim(0)
    };
}

/// The executable's load bias and program headers: the first object
/// `dl_iterate_phdr` reports, for a dynamic executable (glibc, musl) and a
/// static-pie one alike. A static-pie has no PT_PHDR entry, so the bias
/// cannot be derived from AT_PHDR the usual way.
fn executable() -> Option<(usize, &'static [libc::Elf64_Phdr])> {
    type Found = Option<(usize, *const libc::Elf64_Phdr, usize)>;
    extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid `info` for the duration of
        // the call and `data` is the `Found` below, alive across the call.
        unsafe {
            let i = &*info;
            *data.cast::<Found>() = Some((
                usize::try_from(i.dlpi_addr).unwrap_or(0),
                i.dlpi_phdr,
                usize::from(i.dlpi_phnum),
            ));
        }
        1 // stop: the first object is the executable
    }
    let mut found: Found = None;
    // SAFETY: `first` only writes through `data`, which points at `found`.
    unsafe { libc::dl_iterate_phdr(Some(first), std::ptr::addr_of_mut!(found).cast()) };
    let (bias, phdr, phnum) = found?;
    if phdr.is_null() || phnum == 0 {
        return None;
    }
    // SAFETY: dlpi_phdr is the executable's program header table, mapped
    // read-only for the life of the process and never written; dlpi_phnum
    // is its length in entries.
    Some((bias, unsafe { std::slice::from_raw_parts(phdr, phnum) }))
}

#[cfg(test)]
mod release_tests {
    #![allow(clippy::unwrap_used)]

    /// Resident pages of this process (proc(5), /proc/self/statm field 2).
    fn resident_pages() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        statm.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn release_idle_memory_gives_back_resident_code_pages() {
        let before = resident_pages();
        super::release_idle_memory();
        let after = resident_pages();
        assert!(after < before, "resident pages {before} -> {after}");
        // The code it dropped still runs: it faults back in from the file.
        assert_eq!(format!("{}", 6 * 7), "42");
    }
}
