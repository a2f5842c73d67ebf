/* The program's own /proc directory:
 *   mem     /proc/self/mem reads and writes this program's memory (a global,
 *           a read-only page, EIO where nothing is mapped, lseek), comm
 *   fds     /proc/self/fd lists only the program's descriptors
 *   hidden  files that would describe the process holding the program's
 *           descriptors (smaps, stack, the task list...): printed as they
 *           open, so natively they exist and recorded they do not
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include "warptest.h"

static volatile uint64_t global = 0x1122334455667788ULL;
static const char constant[] = "read-only bytes";

static int mem(void)
{
	int fd = open("/proc/self/mem", O_RDWR);
	CHECK(fd >= 0);
	uint64_t v = 0;
	CHECK(pread(fd, &v, sizeof v, (off_t)(uintptr_t)&global) == sizeof v);
	printf("read a global: %s\n", v == 0x1122334455667788ULL ? "its value" : "wrong");
	uint64_t nv = 42;
	CHECK(pwrite(fd, &nv, sizeof nv, (off_t)(uintptr_t)&global) == sizeof nv);
	printf("wrote it: now %llu\n", (unsigned long long)global);
	char ro[16] = { 0 };
	CHECK(pread(fd, ro, 15, (off_t)(uintptr_t)constant) == 15);
	printf("read-only page: %s\n", ro);
	/* A page mapped without access is still there for mem; none is not. */
	char *hole = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(hole != MAP_FAILED);
	CHECK(munmap(hole, 4096) == 0);
	errno = 0;
	printf("unmapped: %s\n", pread(fd, &v, sizeof v, (off_t)(uintptr_t)hole) < 0 ? errname(errno) : "read");
	off_t at = lseek(fd, (off_t)(uintptr_t)&global, SEEK_SET);
	v = 0;
	CHECK(read(fd, &v, sizeof v) == sizeof v);
	printf("lseek then read: %s, %llu\n", at == (off_t)(uintptr_t)&global ? "at the global" : "elsewhere",
	       (unsigned long long)v);
	/* A duplicate shares the position. */
	int dupd = dup(fd);
	CHECK(dupd >= 0);
	CHECK(lseek(fd, (off_t)(uintptr_t)&global, SEEK_SET) == (off_t)(uintptr_t)&global);
	v = 0;
	CHECK(read(dupd, &v, sizeof v) == sizeof v);
	printf("dup: same position, %llu\n", (unsigned long long)v);
	close(dupd);
	close(fd);
	int rfd = open("/proc/self/mem", O_RDONLY);
	CHECK(rfd >= 0);
	errno = 0;
	printf("write to a read-only open: %s\n", pwrite(rfd, &nv, sizeof nv, (off_t)(uintptr_t)&global) < 0 ? errname(errno) : "written");
	close(rfd);
	int c = open("/proc/self/comm", O_RDONLY);
	CHECK(c >= 0);
	char name[32] = { 0 };
	CHECK(read(c, name, sizeof name - 1) > 0);
	printf("comm: %s", name);
	close(c);
	return 0;
}

static int fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	CHECK(d != NULL);
	int n = 0, high = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		n++;
		if (atoi(e->d_name) > 9)
			high++;
	}
	closedir(d);
	printf("fd: %d entries, %d above 9\n", n, high);
	return 0;
}

static int hidden(void)
{
	const char *paths[] = { "/proc/self/smaps", "/proc/self/stack", "/proc/self/numa_maps", "/proc/self/task",
				"/proc/self/fd/1000" };
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		errno = 0;
		int fd = open(paths[i], O_RDONLY);
		printf("%s: %s\n", paths[i], fd >= 0 ? "opens" : errname(errno));
		if (fd >= 0)
			close(fd);
	}
	/* Other ways there: relative to a directory descriptor, to the cwd. */
	int proc = open("/proc", O_RDONLY | O_DIRECTORY);
	CHECK(proc >= 0);
	errno = 0;
	int fd = openat(proc, "self/smaps", O_RDONLY);
	printf("openat(/proc, self/smaps): %s\n", fd >= 0 ? "opens" : errname(errno));
	CHECK(fchdir(proc) == 0);
	errno = 0;
	fd = open("self/mem", O_RDONLY);
	printf("open(self/mem) in /proc: %s\n", fd >= 0 ? "opens" : errname(errno));
	errno = 0;
	fd = open("self/status", O_RDONLY);
	printf("open(self/status) in /proc: %s\n", fd >= 0 ? "opens" : errname(errno));
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc > 1 && !strcmp(argv[1], "mem"))
		return mem();
	if (argc > 1 && !strcmp(argv[1], "fds"))
		return fds();
	if (argc > 1 && !strcmp(argv[1], "hidden"))
		return hidden();
	fprintf(stderr, "usage: procself mem | fds | hidden\n");
	return 2;
}
