// CKernel: kernel interfaces Swift's Glibc module leaves out, for Posture: adjtimex(2) from
// <sys/timex.h> (the clock-sync check) and the device-mapper ioctl from <linux/dm-ioctl.h> (which
// target a mapping really is, for disk-encryption). libc only; nothing to link.
// Posture is the only module that imports this.
#ifndef HOLDFAST_CKERNEL_SHIM_H
#define HOLDFAST_CKERNEL_SHIM_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/timex.h>
#include <unistd.h>
#include <linux/dm-ioctl.h>

/// A read-only query (modes = 0): the return value is the clock state (TIME_OK … TIME_ERROR) or
/// -1 with errno; `status`, `maxerror` and `esterror` are copied out.
static inline int holdfast_adjtimex_query(int *status, long *maxerror, long *esterror) {
    struct timex value = { 0 };
    int state = adjtimex(&value);
    *status = value.status;
    *maxerror = value.maxerror;
    *esterror = value.esterror;
    return state;
}

/// The targets of the device-mapper mapping `name`, as `dmsetup table` would list them but only
/// the target type and the first table word (for `crypt`: the cipher), one "TYPE WORD\n" per
/// target, into `out`. Returns the number of targets; -errno when /dev/mapper/control cannot be
/// opened (no device-mapper here, or not root); -(1000 + errno) when the ioctl fails (ENXIO: no
/// such mapping; ENOBUFS: a table too large to read). DM_TABLE_STATUS with
/// DM_STATUS_TABLE_FLAG returns the table, which for crypt includes the key: only the first word
/// is copied, and the buffer is wiped before returning.
static inline int holdfast_dm_targets(const char *name, char *out, size_t out_len) {
    enum { SIZE = 16384 };
    _Alignas(8) char buffer[SIZE];
    if (out_len == 0) return -EINVAL;
    out[0] = 0;
    int fd = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
    if (fd < 0) return -errno;
    memset(buffer, 0, SIZE);
    struct dm_ioctl *io = (struct dm_ioctl *)buffer;
    io->version[0] = DM_VERSION_MAJOR;
    io->data_size = SIZE;
    io->data_start = sizeof(struct dm_ioctl);
    io->flags = DM_STATUS_TABLE_FLAG;
    strncpy(io->name, name, DM_NAME_LEN - 1);
    int result = ioctl(fd, DM_TABLE_STATUS, io);
    int saved = errno;
    close(fd);
    if (result < 0) {
        explicit_bzero(buffer, SIZE);
        return -(1000 + saved);
    }
    if (io->flags & DM_BUFFER_FULL_FLAG) {
        explicit_bzero(buffer, SIZE);
        return -(1000 + ENOBUFS);
    }
    size_t used = 0;
    uint32_t count = io->target_count;
    size_t offset = 0;  // from the first dm_target_spec (DM_TABLE_STATUS semantics of `next`)
    for (uint32_t index = 0; index < count; index++) {
        size_t at = io->data_start + offset;
        if (at + sizeof(struct dm_target_spec) > SIZE) break;
        struct dm_target_spec *spec = (struct dm_target_spec *)(buffer + at);
        const char *parameters = (const char *)(spec + 1);
        size_t limit = SIZE - (at + sizeof(struct dm_target_spec));
        size_t word = 0;
        while (word < limit && word < 64 && parameters[word] != 0 && parameters[word] != ' ') word++;
        char type[DM_MAX_TYPE_NAME + 1];
        memcpy(type, spec->target_type, DM_MAX_TYPE_NAME);
        type[DM_MAX_TYPE_NAME] = 0;
        int written = snprintf(out + used, out_len - used, "%s %.*s\n", type, (int)word, parameters);
        if (written < 0 || (size_t)written >= out_len - used) {
            explicit_bzero(buffer, SIZE);
            return -(1000 + ENOBUFS);
        }
        used += (size_t)written;
        if (spec->next <= offset) break;
        offset = spec->next;
    }
    explicit_bzero(buffer, SIZE);
    return (int)count;
}

#endif
