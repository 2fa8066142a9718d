// CAudit: libaudit and libauparse as FileWatch sees them. FileWatch is the only module that imports this.
#ifndef HOLDFAST_CAUDIT_SHIM_H
#define HOLDFAST_CAUDIT_SHIM_H

#include <errno.h>
#include <libaudit.h>
#include <auparse.h>
#include <stdio.h>
#include <string.h>

// libaudit's rule builder keeps per-rule state in these globals (auditctl resets them before each
// rule in reset_vars()); they are exported by libaudit.so but not declared in libaudit.h.
extern int _audit_permadded;
extern int _audit_archadded;
extern int _audit_syscalladded;
extern int _audit_exeadded;
extern int _audit_filterfsadded;
extern unsigned int _audit_elf;

/// Before building a rule: what auditctl's reset_vars() does.
static inline void holdfast_audit_rule_reset(void) {
    _audit_permadded = 0;
    _audit_archadded = 0;
    _audit_syscalladded = 0;
    _audit_exeadded = 0;
    _audit_filterfsadded = 0;
    _audit_elf = 0;
}

/// After a syscall list: what auditctl sets (a later arch= is then refused, as auditctl does).
static inline void holdfast_audit_rule_syscalls_added(void) { _audit_syscalladded = 1; }

/// The kernel's status (enabled, pid, lost, backlog). 0 or a negative errno.
static inline int holdfast_audit_status(int fd, struct audit_status *out) {
    if (audit_request_status(fd) < 0) return errno ? -errno : -EIO;
    struct audit_reply reply;
    for (int attempt = 0; attempt < 64; attempt++) {
        int received = audit_get_reply(fd, &reply, GET_REPLY_BLOCKING, 0);
        if (received <= 0) return received < 0 ? received : -EIO;
        if (reply.type == AUDIT_GET) {
            memcpy(out, reply.status, sizeof(*out));
            return 0;
        }
        if (reply.type == NLMSG_ERROR && reply.error->error) return reply.error->error;
    }
    return -EIO;
}

// Fields whose value is a length into the rule's string buffer (linux/audit.h).
static inline int holdfast_audit_field_is_string(unsigned int field) {
    switch (field) {
    case AUDIT_SUBJ_USER: case AUDIT_SUBJ_ROLE: case AUDIT_SUBJ_TYPE: case AUDIT_SUBJ_SEN: case AUDIT_SUBJ_CLR:
    case AUDIT_OBJ_USER: case AUDIT_OBJ_ROLE: case AUDIT_OBJ_TYPE: case AUDIT_OBJ_LEV_LOW: case AUDIT_OBJ_LEV_HIGH:
    case AUDIT_WATCH: case AUDIT_DIR: case AUDIT_FILTERKEY:
#ifdef AUDIT_EXE
    case AUDIT_EXE:
#endif
        return 1;
    default:
        return 0;
    }
}

/// A canonical text of a rule: filter, action, syscall mask, every field with its operator and
/// value (strings quoted). Two rules are the same rule when their texts are equal; the kernel's
/// AUDIT_LIST_RULES reply and libaudit's builder give the same text for the same auditctl line.
/// Returns the length written, or -1 when `size` is too small.
static inline int holdfast_audit_rule_text(const struct audit_rule_data *rule, char *out, size_t size) {
    size_t used = 0;
    int written = snprintf(out, size, "flags=%u action=%u mask=", rule->flags, rule->action);
    if (written < 0 || (size_t)written >= size) return -1;
    used = (size_t)written;
    for (int word = 0; word < AUDIT_BITMASK_SIZE; word++) {
        written = snprintf(out + used, size - used, "%x.", rule->mask[word]);
        if (written < 0 || (size_t)written >= size - used) return -1;
        used += (size_t)written;
    }
    size_t offset = 0;
    for (unsigned int index = 0; index < rule->field_count && index < AUDIT_MAX_FIELDS; index++) {
        unsigned int field = rule->fields[index], op = rule->fieldflags[index], value = rule->values[index];
        if (holdfast_audit_field_is_string(field)) {
            if (offset + value > rule->buflen) return -1;
            written = snprintf(out + used, size - used, " %u/%x/'%.*s'", field, op, (int)value, rule->buf + offset);
            offset += value;
        } else {
            written = snprintf(out + used, size - used, " %u/%x/%u", field, op, value);
        }
        if (written < 0 || (size_t)written >= size - used) return -1;
        used += (size_t)written;
    }
    return (int)used;
}

typedef void (*holdfast_audit_rule_visitor)(const char *text, void *context);

/// Lists the kernel's rules (AUDIT_LIST_RULES), calling `visit` with each one's canonical text.
/// 0 or a negative errno.
static inline int holdfast_audit_list_rules(int fd, holdfast_audit_rule_visitor visit, void *context) {
    if (audit_request_rules_list_data(fd) <= 0) return errno ? -errno : -EIO;
    struct audit_reply reply;
    char text[16384];
    for (;;) {
        int received = audit_get_reply(fd, &reply, GET_REPLY_BLOCKING, 0);
        if (received <= 0) return received < 0 ? received : -EIO;
        if (reply.type == NLMSG_DONE) return 0;
        if (reply.type == NLMSG_ERROR) {
            if (reply.error->error) return reply.error->error;
            continue;
        }
        if (reply.type == AUDIT_LIST_RULES) {
            if (holdfast_audit_rule_text(reply.ruledata, text, sizeof(text)) < 0) {
                visit("(a rule too large to compare)", context);
            } else {
                visit(text, context);
            }
        }
    }
}

#endif
