//! `query-named-block-nodes`: QAPI's `BlockDeviceInfo` with QEMU's member
//! names, in schema order (which decides QDict order on the wire).

use serde::Serialize;
use serde_json::Value;

use super::{DetectZeroes, NodeInfo};

/// QAPI `BlockDeviceInfo` (the members our nodes have).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockDeviceInfo {
    pub file: String,
    #[serde(rename = "node-name")]
    pub node_name: String,
    pub ro: bool,
    pub drv: String,
    pub backing_file_depth: i64,
    pub active: bool,
    pub encrypted: bool,
    pub detect_zeroes: DetectZeroes,
    pub bps: i64,
    pub bps_rd: i64,
    pub bps_wr: i64,
    pub iops: i64,
    pub iops_rd: i64,
    pub iops_wr: i64,
    pub image: ImageInfo,
    pub cache: BlockdevCacheInfo,
    pub write_threshold: i64,
}

/// QAPI `ImageInfo` (`BlockNodeInfo` without snapshots and backing).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageInfo {
    pub filename: String,
    pub format: String,
    #[serde(rename = "dirty-flag", skip_serializing_if = "Option::is_none")]
    pub dirty_flag: Option<bool>,
    #[serde(rename = "actual-size", skip_serializing_if = "Option::is_none")]
    pub actual_size: Option<u64>,
    #[serde(rename = "virtual-size")]
    pub virtual_size: u64,
    #[serde(rename = "format-specific", skip_serializing_if = "Option::is_none")]
    pub format_specific: Option<Value>,
}

/// QAPI `BlockdevCacheInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BlockdevCacheInfo {
    pub writeback: bool,
    pub direct: bool,
    #[serde(rename = "no-flush")]
    pub no_flush: bool,
}

impl BlockDeviceInfo {
    pub(crate) fn new(node_name: &str, i: NodeInfo) -> Self {
        BlockDeviceInfo {
            file: i.filename.clone(),
            node_name: node_name.to_owned(),
            ro: i.read_only,
            drv: i.driver.to_owned(),
            backing_file_depth: 0,
            active: true,
            encrypted: false,
            detect_zeroes: i.detect_zeroes,
            bps: 0,
            bps_rd: 0,
            bps_wr: 0,
            iops: 0,
            iops_rd: 0,
            iops_wr: 0,
            image: ImageInfo {
                filename: i.filename,
                format: i.driver.to_owned(),
                dirty_flag: i.dirty_flag,
                actual_size: i.actual_size,
                virtual_size: i.virtual_size,
                format_specific: i.format_specific,
            },
            cache: BlockdevCacheInfo {
                writeback: true,
                direct: i.cache_direct,
                no_flush: i.cache_no_flush,
            },
            write_threshold: 0,
        }
    }
}
