//! `/proc/diskstats` for guest-get-diskstats, parsed as qemu-ga's
//! `guest_get_diskstats` does with one `sscanf` per line:
//! `%u %u %s` then up to 17 numbers, some read as `unsigned int` (the tick counters
//! after the first, `ios-pgr`) and the rest as `unsigned long`.
//!
//! - fewer than 7 conversions: the line is skipped;
//! - exactly 7 (the old 4-field partition format): read-ios, read-sectors, write-ios,
//!   write-sectors;
//! - 8 to 13: the entry is kept with empty `stats`;
//! - 14 or more: the eleven classic counters; 18 or more adds discard-*; 20 adds
//!   flush-*.
//!
//! Lines come out in file order (kernel order), loop and ram devices included.

use qga_proto::cmds::storage::{GuestDiskStats, GuestDiskStatsInfo};

use super::cscan::Scanner;

/// Field widths in qemu-ga's format after `%u %u %s`: `true` for `%lu`.
const LONG: [bool; 17] = [
    true, true, true, true, true, true, true, false, false, false,
    false, // rd_ios .. rq_ticks
    true, true, true, false, // discard ios, merges, sectors, ticks
    true, false, // flush ios, ticks
];

/// Parses one line; `None` when qemu-ga skips it.
pub fn parse_line(line: &[u8]) -> Option<GuestDiskStatsInfo> {
    let mut s = Scanner::new(line);
    let major = s.uint()?;
    let minor = s.uint()?;
    let name = s.word()?;
    let mut v = [0u64; 17];
    let mut n = 3;
    for (i, long) in LONG.iter().enumerate() {
        match s.ulong(10) {
            Some(x) => v[i] = if *long { x } else { u64::from(x as u32) },
            None => break,
        }
        n += 1;
    }
    if n < 7 {
        return None;
    }
    let mut st = GuestDiskStats::default();
    if n == 7 {
        st.read_ios = Some(v[0]);
        st.read_sectors = Some(v[1]);
        st.write_ios = Some(v[2]);
        st.write_sectors = Some(v[3]);
    }
    if n >= 14 {
        st.read_ios = Some(v[0]);
        st.read_merges = Some(v[1]);
        st.read_sectors = Some(v[2]);
        st.read_ticks = Some(v[3]);
        st.write_ios = Some(v[4]);
        st.write_merges = Some(v[5]);
        st.write_sectors = Some(v[6]);
        st.write_ticks = Some(v[7]);
        st.ios_pgr = Some(v[8]);
        st.total_ticks = Some(v[9]);
        st.weight_ticks = Some(v[10]);
    }
    if n >= 18 {
        st.discard_ios = Some(v[11]);
        st.discard_merges = Some(v[12]);
        st.discard_sectors = Some(v[13]);
        st.discard_ticks = Some(v[14]);
    }
    if n >= 20 {
        st.flush_ios = Some(v[15]);
        st.flush_ticks = Some(v[16]);
    }
    Some(GuestDiskStatsInfo {
        name: String::from_utf8_lossy(name).into_owned(),
        major: u64::from(major),
        minor: u64::from(minor),
        stats: st,
    })
}

/// Parses the whole file, in order.
pub fn parse(text: &[u8]) -> Vec<GuestDiskStatsInfo> {
    text.split(|&b| b == b'\n').filter_map(parse_line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_counts() {
        let text = b"   8       1 sda1 10 20 30 40\n\
            8 2 sda2 1 2 3 4 5\n\
            8 0 sda 1 2 3 4 5 6 7 8 9 10 11\n\
            8 16 sdb 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n\
            254 0 vda 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n\
            7 0 loop0 1 2\n\n";
        let all = parse(text);
        let names: Vec<_> = all.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["sda1", "sda2", "sda", "sdb", "vda"]);
        let old = &all[0].stats;
        assert_eq!(
            (
                old.read_ios,
                old.read_sectors,
                old.write_ios,
                old.write_sectors
            ),
            (Some(10), Some(20), Some(30), Some(40))
        );
        assert_eq!(old.read_merges, None);
        assert_eq!(all[1].stats, GuestDiskStats::default());
        let classic = &all[2].stats;
        assert_eq!(
            (classic.read_merges, classic.weight_ticks),
            (Some(2), Some(11))
        );
        assert_eq!(classic.discard_ios, None);
        let discard = &all[3].stats;
        assert_eq!(
            (discard.discard_ios, discard.discard_ticks),
            (Some(12), Some(15))
        );
        assert_eq!(discard.flush_ios, None);
        let full = &all[4].stats;
        assert_eq!((full.flush_ios, full.flush_ticks), (Some(16), Some(17)));
        assert_eq!((all[4].major, all[4].minor), (254, 0));
    }

    #[test]
    fn int_fields_truncate_like_c() {
        // write-ticks is `%u`: 2^32 + 5 is stored as 5; read-ticks is `%lu`.
        let d = parse_line(b"8 0 sda 1 2 3 4294967301 5 6 7 4294967301 9 10 11").unwrap();
        assert_eq!(d.stats.read_ticks, Some(4_294_967_301));
        assert_eq!(d.stats.write_ticks, Some(5));
    }
}
