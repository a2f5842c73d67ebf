/* Touches N MiB of memory (default 1024), then forks a child that exits at
 * once and waits for it: the cost of forking a process with that much
 * memory (a copy of the touched pages under warpctl record, for now). */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
	char *p = malloc(mib << 20);
	if (!p)
		return 2;
	for (size_t i = 0; i < (mib << 20); i += 4096)
		p[i] = (char)(i >> 12 | 1);
	pid_t k = fork();
	if (k == 0)
		_exit(p[4096] == 1 ? 0 : 1);
	int st;
	if (k < 0 || waitpid(k, &st, 0) != k)
		return 3;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 4;
}
