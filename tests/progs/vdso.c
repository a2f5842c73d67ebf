/* The vDSO as a program finds it: AT_SYSINFO_EHDR points at an ELF shared
 * object whose dynamic symbols (found through its SysV hash table's symbol
 * count) include the __vdso_ functions with version LINUX_2.6; calling them
 * answers as the system calls do; /proc/self/maps shows [vdso]. Prints only
 * what holds natively and recorded alike. */
#include "warptest.h"

#include <elf.h>
#include <sched.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/time.h>

static const Elf64_Sym *symtab;
static const char *strtab;
static const Elf64_Half *versym;
static const Elf64_Verdef *verdef;
static uint32_t nsyms;
static uintptr_t bias;

/* The version name of symbol i, or "" without one. */
static const char *version_of(uint32_t i)
{
	if (!versym || !verdef)
		return "";
	Elf64_Half ndx = versym[i] & 0x7fff;
	for (const Elf64_Verdef *d = verdef;; d = (const void *)((const char *)d + d->vd_next)) {
		if (d->vd_ndx == ndx) {
			const Elf64_Verdaux *a = (const void *)((const char *)d + d->vd_aux);
			return strtab + a->vda_name;
		}
		if (!d->vd_next)
			return "";
	}
}

static void *lookup(const char *name)
{
	for (uint32_t i = 1; i < nsyms; i++) {
		const Elf64_Sym *s = &symtab[i];
		if (s->st_shndx == SHN_UNDEF || ELF64_ST_TYPE(s->st_info) != STT_FUNC)
			continue;
		if (strcmp(strtab + s->st_name, name) == 0) {
			printf("%s: a function, version %s\n", name, version_of(i));
			return (void *)(bias + s->st_value);
		}
	}
	printf("%s: not found\n", name);
	return NULL;
}

int main(void)
{
	uintptr_t base = getauxval(AT_SYSINFO_EHDR);
	if (!base) {
		printf("no AT_SYSINFO_EHDR\n");
		return 1;
	}
	const Elf64_Ehdr *eh = (const void *)base;
	printf("ELF: %d, shared object: %d\n", memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0, eh->e_type == ET_DYN);
	const Elf64_Phdr *ph = (const void *)(base + eh->e_phoff);
	const Elf64_Dyn *dyn = NULL;
	int loads = 0;
	for (int i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type == PT_LOAD && loads++ == 0)
			bias = base - ph[i].p_vaddr;
		if (ph[i].p_type == PT_DYNAMIC)
			dyn = (const void *)ph[i].p_vaddr;
	}
	dyn = (const void *)((uintptr_t)dyn + bias);
	const uint32_t *hash = NULL;
	const char *soname_at = NULL;
	for (; dyn->d_tag != DT_NULL; dyn++) {
		uintptr_t p = bias + dyn->d_un.d_ptr;
		switch (dyn->d_tag) {
		case DT_SYMTAB: symtab = (const void *)p; break;
		case DT_STRTAB: strtab = (const void *)p; break;
		case DT_HASH: hash = (const void *)p; break;
		case DT_VERSYM: versym = (const void *)p; break;
		case DT_VERDEF: verdef = (const void *)p; break;
		case DT_SONAME: soname_at = (const char *)(uintptr_t)dyn->d_un.d_val; break;
		}
	}
	if (!symtab || !strtab || !hash) {
		printf("no symbol table\n");
		return 1;
	}
	nsyms = hash[1];
	printf("soname: %s\n", soname_at ? strtab + (uintptr_t)soname_at : "(none)");

	int (*vclock)(clockid_t, struct timespec *) = lookup("__vdso_clock_gettime");
	int (*vgtod)(struct timeval *, void *) = lookup("__vdso_gettimeofday");
	time_t (*vtime)(time_t *) = lookup("__vdso_time");
	long (*vgetcpu)(unsigned *, unsigned *, void *) = lookup("__vdso_getcpu");
	if (!vclock || !vgtod || !vtime || !vgetcpu)
		return 1;

	struct timespec a, b, s;
	int r1 = vclock(CLOCK_MONOTONIC, &a);
	syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &s);
	int r2 = vclock(CLOCK_MONOTONIC, &b);
	int ordered = (b.tv_sec > a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec >= a.tv_nsec)) &&
		      s.tv_sec >= a.tv_sec && s.tv_sec <= b.tv_sec;
	printf("clock_gettime: %d %d, in order with the syscall's: %d\n", r1, r2, ordered);
	printf("clock_gettime of a bad clock: %d\n", vclock((clockid_t)12345, &a) < 0);
	struct timeval tv;
	int r = vgtod(&tv, NULL);
	time_t t = vtime(NULL);
	printf("gettimeofday: %d, time within a second of it: %d\n", r, t - tv.tv_sec <= 1 && t >= tv.tv_sec);
	unsigned cpu = 0, node = 0;
	/* Whether it fills in the CPU differs between hosts' vDSOs: not said. */
	printf("getcpu: %ld\n", vgetcpu(&cpu, &node, NULL));
	/* The C library's own clock_gettime (through the vDSO when it found it). */
	printf("libc clock_gettime: %d\n", clock_gettime(CLOCK_REALTIME, &a));

	FILE *maps = fopen("/proc/self/maps", "r");
	char line[512];
	int shown = 0;
	while (maps && fgets(line, sizeof line, maps))
		shown |= strstr(line, "[vdso]") != NULL;
	printf("[vdso] in maps: %d\n", shown);
	printf("EXIT-SUCCESS\n");
	return 0;
}
