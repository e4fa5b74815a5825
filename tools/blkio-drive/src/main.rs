//! A libblkio front end for vhost-user-blk sockets (work in progress).

fn main() {
    eprintln!("blkio-drive: no mode implemented yet");
    std::process::exit(2);
}
