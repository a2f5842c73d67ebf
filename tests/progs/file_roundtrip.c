/* Files and directories inside the directory given as argv[1]: create,
 * write 1 MiB of a pattern, read it back, rename, stat, truncate, append,
 * mkdir/rmdir, unlink, and sorted directory listings. Prints only names
 * relative to that directory, sizes, errno names and checksums. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include "warptest.h"

#define SIZE (1024 * 1024)

static unsigned char pattern_byte(size_t i)
{
	return (unsigned char)((i * 131u + (i >> 12) * 7u) & 0xff);
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list(const char *dir, const char *label)
{
	DIR *d = opendir(dir);
	CHECK(d != NULL);
	char *names[64];
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		CHECK(n < 64);
		names[n] = strdup(e->d_name);
		CHECK(names[n] != NULL);
		n++;
	}
	CHECK(closedir(d) == 0);
	qsort(names, n, sizeof names[0], cmp);
	printf("listing %s (%zu):", label, n);
	for (size_t i = 0; i < n; i++) {
		printf(" %s", names[i]);
		free(names[i]);
	}
	printf("\n");
}

static long long size_of(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return -1;
	return (long long)st.st_size;
}

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	CHECK(chdir(argv[1]) == 0);
	list(".", "start");

	unsigned char *buf = malloc(SIZE);
	CHECK(buf != NULL);
	for (size_t i = 0; i < SIZE; i++)
		buf[i] = pattern_byte(i);
	uint64_t want = fnv1a(FNV_INIT, buf, SIZE);

	/* Write in uneven chunks so no size is special. */
	int fd = open("data.bin", O_CREAT | O_EXCL | O_WRONLY, 0644);
	CHECK(fd >= 0);
	for (size_t off = 0; off < SIZE;) {
		size_t chunk = 1000 + (off % 7) * 3001;
		if (chunk > SIZE - off)
			chunk = SIZE - off;
		write_all(fd, buf + off, chunk);
		off += chunk;
	}
	CHECK(close(fd) == 0);
	int again = open("data.bin", O_CREAT | O_EXCL | O_WRONLY, 0644);
	printf("create again: %s\n", again < 0 ? errname(errno) : "opened");

	/* Read it back in a different chunk size. */
	memset(buf, 0, SIZE);
	fd = open("data.bin", O_RDONLY);
	CHECK(fd >= 0);
	size_t got = 0;
	for (;;) {
		ssize_t n = read(fd, buf + got, got + 7777 <= SIZE ? 7777 : SIZE - got);
		CHECK(n >= 0);
		if (n == 0)
			break;
		got += (size_t)n;
		if (got == SIZE) {
			char extra;
			CHECK(read(fd, &extra, 1) == 0);
			break;
		}
	}
	uint64_t have = fnv1a(FNV_INIT, buf, got);
	printf("read back %zu bytes, checksum %016llx, %s\n", got,
	       (unsigned long long)have, have == want ? "matches" : "DIFFERS");

	unsigned char mid[16];
	CHECK(pread(fd, mid, sizeof mid, 500000) == (ssize_t)sizeof mid);
	printf("pread at 500000: %s\n",
	       memcmp(mid, buf + 500000, sizeof mid) ? "DIFFERS" : "matches");
	printf("lseek end: %lld\n", (long long)lseek(fd, 0, SEEK_END));
	struct stat st;
	CHECK(fstat(fd, &st) == 0);
	printf("fstat size %lld regular %d\n", (long long)st.st_size, S_ISREG(st.st_mode) ? 1 : 0);
	CHECK(close(fd) == 0);

	CHECK(rename("data.bin", "renamed.bin") == 0);
	printf("size data.bin %lld renamed.bin %lld\n", size_of("data.bin"), size_of("renamed.bin"));
	errno = 0;
	printf("open data.bin: %s\n", open("data.bin", O_RDONLY) < 0 ? errname(errno) : "opened");

	/* Append, truncate. */
	fd = open("log.txt", O_CREAT | O_WRONLY | O_APPEND, 0600);
	CHECK(fd >= 0);
	write_all(fd, "one\n", 4);
	CHECK(lseek(fd, 0, SEEK_SET) == 0);
	write_all(fd, "two\n", 4);
	CHECK(close(fd) == 0);
	fd = open("log.txt", O_RDONLY);
	CHECK(fd >= 0);
	char text[32] = {0};
	CHECK(read(fd, text, sizeof text - 1) == 8);
	CHECK(close(fd) == 0);
	printf("log.txt: %s", text);
	CHECK(truncate("renamed.bin", 4096) == 0);
	printf("after truncate renamed.bin %lld\n", size_of("renamed.bin"));

	/* Directories. */
	CHECK(mkdir("sub", 0755) == 0);
	printf("mkdir again: %s\n", mkdir("sub", 0755) ? errname(errno) : "made");
	fd = open("sub/inner.txt", O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0);
	write_all(fd, "inner\n", 6);
	CHECK(close(fd) == 0);
	printf("rmdir non-empty: %s\n", rmdir("sub") ? errname(errno) : "removed");
	printf("unlink dir: %s\n", unlink("sub") ? errname(errno) : "removed");
	printf("open file as dir: %s\n",
	       open("log.txt/x", O_RDONLY) < 0 ? errname(errno) : "opened");
	list(".", "full");
	list("sub", "sub");
	CHECK(unlink("sub/inner.txt") == 0);
	CHECK(rmdir("sub") == 0);
	CHECK(unlink("renamed.bin") == 0);
	CHECK(unlink("log.txt") == 0);
	printf("unlink missing: %s\n", unlink("log.txt") ? errname(errno) : "removed");
	list(".", "end");
	free(buf);
	puts("EXIT-SUCCESS");
	return 0;
}
