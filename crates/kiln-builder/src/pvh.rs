//! An x86 kernel's uncompressed image, for direct boot through its PVH entry point:
//! the guest then neither decompresses itself (a quarter of a second under TCG) nor
//! keeps the compressed copy in its memory.
//!
//! Written here rather than taken from a crate: what is needed is two fixed layouts
//! (the Linux boot protocol's setup header and ELF notes) and the LZ4 "legacy" stream
//! the kernel's build writes; the LZ4 blocks themselves are lz4_flex's.

/// The uncompressed ELF kernel inside `bzimage`, if it is LZ4-compressed (Debian's x86
/// kernels) and has a PVH entry (a Xen ELF note of type PHYS32_ENTRY); None otherwise,
/// and the bzImage is booted as it is.
pub fn pvh_kernel(bzimage: &[u8]) -> Option<Vec<u8>> {
    // The setup header: "HdrS" at 0x202, the protocol version at 0x206, the setup
    // sectors at 0x1f1, and from protocol 2.08 the payload's offset and length (from
    // the start of the protected-mode code) at 0x248 and 0x24c.
    if bzimage.get(0x202..0x206)? != b"HdrS" || u16_at(bzimage, 0x206)? < 0x208 {
        return None;
    }
    let setup_sects = match *bzimage.get(0x1f1)? {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sects + 1) * 512 + u32_at(bzimage, 0x248)? as usize;
    let payload = bzimage.get(start..start.checked_add(u32_at(bzimage, 0x24c)? as usize)?)?;
    // The kernel's build appends the uncompressed size to every compressed payload.
    let (stream, size) = payload.split_at(payload.len().checked_sub(4)?);
    let elf = lz4_legacy(stream, u32_at(size, 0)? as usize)?;
    has_pvh_entry(&elf).then_some(elf)
}

const LZ4_LEGACY_MAGIC: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];
/// Each block of a legacy stream but the last holds 8 MiB.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

/// A legacy LZ4 stream (magic, then blocks each preceded by its compressed length)
/// that must decompress to exactly `size` bytes.
fn lz4_legacy(stream: &[u8], size: usize) -> Option<Vec<u8>> {
    if size == 0 || size > 1 << 30 {
        return None;
    }
    let mut rest = stream.strip_prefix(&LZ4_LEGACY_MAGIC)?;
    let mut out = vec![0u8; size];
    let mut at = 0;
    while at < size {
        if let Some(next) = rest.strip_prefix(&LZ4_LEGACY_MAGIC) {
            rest = next;
            continue;
        }
        let n = u32_at(rest, 0)? as usize;
        let block = rest.get(4..4usize.checked_add(n)?)?;
        let end = (at + LZ4_LEGACY_BLOCK).min(size);
        let written = lz4_flex::block::decompress_into(block, &mut out[at..end]).ok()?;
        if written == 0 {
            return None;
        }
        at += written;
        rest = &rest[4 + n..];
    }
    Some(out)
}

/// Whether a 64-bit little-endian ELF has a Xen note of type 18
/// (XEN_ELFNOTE_PHYS32_ENTRY), the entry QEMU's PVH boot uses.
fn has_pvh_entry(elf: &[u8]) -> bool {
    (|| -> Option<bool> {
        if elf.get(..6)? != b"\x7fELF\x02\x01" {
            return Some(false);
        }
        let phoff = u64_at(elf, 0x20)? as usize;
        let (phentsize, phnum) = (usize::from(u16_at(elf, 0x36)?), usize::from(u16_at(elf, 0x38)?));
        for i in 0..phnum {
            let ph = elf.get(phoff.checked_add(i.checked_mul(phentsize)?)?..)?;
            if u32_at(ph, 0)? != 4 {
                continue; // not PT_NOTE
            }
            let (off, len) = (u64_at(ph, 8)? as usize, u64_at(ph, 32)? as usize);
            let mut notes = elf.get(off..off.checked_add(len)?)?;
            while notes.len() >= 12 {
                let (namesz, descsz, kind) =
                    (u32_at(notes, 0)? as usize, u32_at(notes, 4)? as usize, u32_at(notes, 8)?);
                let name = notes.get(12..12 + namesz)?;
                if name == b"Xen\0" && kind == 18 {
                    return Some(true);
                }
                let skip = 12 + namesz.div_ceil(4) * 4 + descsz.div_ceil(4) * 4;
                notes = notes.get(skip..)?;
            }
        }
        Some(false)
    })()
    .unwrap_or(false)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with one PT_NOTE segment holding a Xen note of `kind`.
    fn elf(kind: u32, padding: usize) -> Vec<u8> {
        let mut e = vec![0u8; 0x40 + 0x38];
        e[..6].copy_from_slice(b"\x7fELF\x02\x01");
        e[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let mut note = Vec::new();
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&kind.to_le_bytes());
        note.extend_from_slice(b"Xen\0");
        note.extend_from_slice(&0x0100_0000u32.to_le_bytes());
        let off = e.len() as u64;
        e[0x40..0x44].copy_from_slice(&4u32.to_le_bytes());
        e[0x48..0x50].copy_from_slice(&off.to_le_bytes());
        e[0x60..0x68].copy_from_slice(&(note.len() as u64).to_le_bytes());
        e.extend_from_slice(&note);
        e.resize(e.len() + padding, 0x90);
        e
    }

    /// A bzImage around `kernel`, compressed as the kernel's build does (legacy LZ4,
    /// 8 MiB blocks, the size appended).
    fn bzimage(kernel: &[u8]) -> Vec<u8> {
        let mut payload = LZ4_LEGACY_MAGIC.to_vec();
        for chunk in kernel.chunks(LZ4_LEGACY_BLOCK) {
            let block = lz4_flex::block::compress(chunk);
            payload.extend_from_slice(&(block.len() as u32).to_le_bytes());
            payload.extend_from_slice(&block);
        }
        payload.extend_from_slice(&(kernel.len() as u32).to_le_bytes());
        let mut b = vec![0u8; 5 * 512 + 0x100];
        b[0x1f1] = 4;
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        b[0x248..0x24c].copy_from_slice(&0x100u32.to_le_bytes());
        b[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(&payload);
        b.extend_from_slice(b"trailing setup data");
        b
    }

    #[test]
    fn a_pvh_kernel_comes_out_whole_across_blocks() {
        let kernel = elf(18, LZ4_LEGACY_BLOCK + 12345);
        assert_eq!(pvh_kernel(&bzimage(&kernel)).as_deref(), Some(&kernel[..]));
    }

    #[test]
    fn anything_else_is_booted_as_it_is() {
        assert_eq!(pvh_kernel(&bzimage(&elf(17, 100))), None, "no PVH entry");
        let mut b = bzimage(&elf(18, 100));
        b[0x206..0x208].copy_from_slice(&0x207u16.to_le_bytes());
        assert_eq!(pvh_kernel(&b), None, "too old a boot protocol");
        let mut b = bzimage(&elf(18, 100));
        let at = b.len() - 19 - 4;
        b[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(pvh_kernel(&b), None, "a size that does not match");
        assert_eq!(pvh_kernel(b"not a kernel"), None);
        assert_eq!(pvh_kernel(&[]), None);
    }
}
