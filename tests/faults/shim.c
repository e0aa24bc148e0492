/*
 * Storage fault injection for tests/storage_faults.rs, loaded with LD_PRELOAD into the real
 * hub binary. For files whose path contains $LIENTHONG_FAULT_DIR it reads the first word of the file
 * $LIENTHONG_FAULT_CTL on every call it wraps:
 *   (missing, empty)  the real call
 *   eio-sync          fsync/fdatasync/sync_file_range fail with EIO (nothing is synced)
 *   hang-sync         fsync/fdatasync block until the word changes, then run
 *   eio-write         write/pwrite/writev/pwritev fail with EIO
 * Everything else (sockets, other files) passes through untouched.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_sync_file_range)(int, off_t, off_t, unsigned int);

/* Resolves the real functions once, before main. */
__attribute__((constructor)) static void resolve(void) {
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_writev = dlsym(RTLD_NEXT, "writev");
    real_pwritev = dlsym(RTLD_NEXT, "pwritev");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_sync_file_range = dlsym(RTLD_NEXT, "sync_file_range");
}
#define REAL(name) real_##name

/* The mode word now (empty when no fault is set). Uses raw syscalls through open/read,
 * which this file does not wrap. */
static void mode(char *out, size_t n) {
    out[0] = 0;
    const char *ctl = getenv("LIENTHONG_FAULT_CTL");
    if (!ctl) return;
    int fd = open(ctl, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t r = read(fd, out, n - 1);
    close(fd);
    if (r <= 0) { out[0] = 0; return; }
    out[r] = 0;
    for (ssize_t i = 0; i < r; i++)
        if (out[i] == '\n' || out[i] == ' ') { out[i] = 0; break; }
}

/* Whether fd is a file whose path contains $LIENTHONG_FAULT_DIR. */
static int targeted(int fd) {
    const char *dir = getenv("LIENTHONG_FAULT_DIR");
    if (!dir || fd < 0) return 0;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = 0;
    return strstr(path, dir) != NULL;
}

static int sync_fault(int fd) {
    char m[32];
    mode(m, sizeof m);
    if (!m[0] || !targeted(fd)) return 0;
    if (strcmp(m, "eio-sync") == 0) { errno = EIO; return -1; }
    while (strcmp(m, "hang-sync") == 0) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        mode(m, sizeof m);
    }
    return 0;
}

static int write_fault(int fd) {
    char m[32];
    mode(m, sizeof m);
    if (strcmp(m, "eio-write") == 0 && targeted(fd)) { errno = EIO; return -1; }
    return 0;
}

int fsync(int fd) { return sync_fault(fd) ? -1 : REAL(fsync)(fd); }
int fdatasync(int fd) { return sync_fault(fd) ? -1 : REAL(fdatasync)(fd); }
int sync_file_range(int fd, off_t off, off_t n, unsigned int flags) {
    return sync_fault(fd) ? -1 : REAL(sync_file_range)(fd, off, n, flags);
}
ssize_t write(int fd, const void *b, size_t n) {
    return write_fault(fd) ? -1 : REAL(write)(fd, b, n);
}
ssize_t pwrite(int fd, const void *b, size_t n, off_t off) {
    return write_fault(fd) ? -1 : REAL(pwrite)(fd, b, n, off);
}
ssize_t pwrite64(int fd, const void *b, size_t n, off_t off) {
    return write_fault(fd) ? -1 : REAL(pwrite)(fd, b, n, off);
}
ssize_t writev(int fd, const struct iovec *v, int n) {
    return write_fault(fd) ? -1 : REAL(writev)(fd, v, n);
}
ssize_t pwritev(int fd, const struct iovec *v, int n, off_t off) {
    return write_fault(fd) ? -1 : REAL(pwritev)(fd, v, n, off);
}
