/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the fuzz harnesses' seed writers (built without FUZZING) share. */
#ifndef FERRY_TESTS_FUZZ_SEED_H
#define FERRY_TESTS_FUZZ_SEED_H

#include <stdint.h>
#include <stdio.h>

/* Writes @n bytes of @b as DIR/seed-NN (NN: @i). Returns 0, or 1 with the
 * reason on stderr. */
static inline int fuzz_write_seed(const char *dir, int i, const uint8_t *b,
				  size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/seed-%02d", dir, i);
	f = fopen(path, "wb");
	if (!f || fwrite(b, 1, n, f) != n) {
		perror(path);
		if (f)
			fclose(f);
		return 1;
	}
	return fclose(f) != 0;
}

#endif /* FERRY_TESTS_FUZZ_SEED_H */
