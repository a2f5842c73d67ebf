/* Prints argc, every argv[i] (argv[0] too: it is passed as given) and the
 * WARP_TEST_* environment variables in sorted order, plus whether two
 * named ones are set. */
#include "warptest.h"

extern char **environ;

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	printf("argc=%d\n", argc);
	for (int i = 0; i < argc; i++)
		printf("argv[%d]=[%s]\n", i, argv[i]);
	CHECK(argv[argc] == NULL);

	size_t n = 0;
	for (char **e = environ; *e; e++)
		n++;
	char **vars = calloc(n + 1, sizeof *vars);
	CHECK(vars != NULL);
	size_t k = 0;
	for (char **e = environ; *e; e++)
		if (strncmp(*e, "WARP_TEST_", 10) == 0)
			vars[k++] = *e;
	qsort(vars, k, sizeof *vars, cmp);
	printf("WARP_TEST_* count=%zu\n", k);
	for (size_t i = 0; i < k; i++)
		printf("env [%s]\n", vars[i]);

	const char *v = getenv("WARP_TEST_VAR");
	printf("WARP_TEST_VAR %s\n", v ? v : "(unset)");
	v = getenv("WARP_TEST_UNSET");
	printf("WARP_TEST_UNSET %s\n", v ? v : "(unset)");
	free(vars);
	puts("EXIT-SUCCESS");
	return 0;
}
