/* The anchor for `make bench`'s audit row: libauparse parsing and assembling an audit log the way
 * auditd plugins do (AUSOURCE_FEED, auparse_feed in 64 KiB chunks, an AUPARSE_CB_EVENT_READY
 * callback that walks every record and every field's name and value). Prints one line:
 *   records R events E fields F seconds S vmhwm_kib K
 * (VmHWM from /proc/self/status: ru_maxrss would count the spawning parent's memory, since
 * posix_spawn's vfork carries the parent's high-water mark across exec.)
 * Usage: auparse-feed FILE. Not shipped. */
#include <auparse.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct counts {
	unsigned long records, events, fields, bytes;
};

static void ready(auparse_state_t *au, auparse_cb_event_t type, void *data)
{
	struct counts *counts = data;
	if (type != AUPARSE_CB_EVENT_READY)
		return;
	counts->events++;
	if (auparse_first_record(au) <= 0)
		return;
	do {
		counts->records++;
		if (auparse_first_field(au) <= 0)
			continue;
		do {
			const char *name = auparse_get_field_name(au);
			const char *value = auparse_get_field_str(au);
			counts->fields++;
			if (name && value)
				counts->bytes += (unsigned char)name[0] + (unsigned char)value[0];
		} while (auparse_next_field(au) > 0);
	} while (auparse_next_record(au) > 0);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: auparse-feed FILE\n");
		return 64;
	}
	int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "auparse-feed: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	struct counts counts = {0};
	struct timespec start, end;
	clock_gettime(CLOCK_MONOTONIC, &start);
	auparse_state_t *au = auparse_init(AUSOURCE_FEED, NULL);
	if (!au) {
		fprintf(stderr, "auparse-feed: auparse_init failed\n");
		return 1;
	}
	auparse_add_callback(au, ready, &counts, NULL);
	static char buffer[65536];
	for (;;) {
		ssize_t got = read(fd, buffer, sizeof buffer);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			fprintf(stderr, "auparse-feed: read: %s\n", strerror(errno));
			return 1;
		}
		if (got == 0)
			break;
		auparse_feed(au, buffer, (size_t)got);
	}
	auparse_flush_feed(au);
	auparse_destroy(au);
	clock_gettime(CLOCK_MONOTONIC, &end);
	close(fd);
	long hwm = -1;
	FILE *status = fopen("/proc/self/status", "r");
	if (status) {
		char line[256];
		while (fgets(line, sizeof line, status))
			if (sscanf(line, "VmHWM: %ld", &hwm) == 1)
				break;
		fclose(status);
	}
	double seconds = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
	printf("records %lu events %lu fields %lu seconds %.6f vmhwm_kib %ld\n", counts.records, counts.events, counts.fields,
	       seconds, hwm);
	return 0;
}
