// SPDX-License-Identifier: LGPL-2.1-or-later
/* Migration statistics as JSON. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define LOG_PREFIX "migrate"
#include "migrate/internal.h"

int mig_stats_write_json(const struct mig_stats *st, const char *role,
			 const char *path)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
	int ret = 0;

	if (!f) {
		ret = -errno;
		pr_err("cannot write %s: %s", path, strerror(-ret));
		return ret;
	}
	fprintf(f, "{\n  \"role\": \"%s\",\n  \"outcome\": \"%s\",\n"
		   "  \"mode\": \"%s\",\n", role, st->outcome, st->mode);
	if (st->placement[0])
		fprintf(f, "  \"placement\": \"%s\",\n", st->placement);
	fprintf(f, "  \"total_s\": %.3f,\n  \"setup_s\": %.3f,\n"
		   "  \"downtime_ms\": %.2f,\n  \"state_load_ms\": %.2f,\n",
		st->total_s, st->setup_s, st->downtime_ms, st->state_load_ms);
	fprintf(f, "  \"guest_bytes\": %llu,\n  \"bulk_streams\": %u,\n",
		(unsigned long long)st->guest_bytes, st->nbulk);
	fprintf(f, "  \"bytes\": {\"page_data\": %llu, \"zero_bitmap\": %llu, "
		   "\"duplicate_refs\": %llu, \"protocol\": %llu, "
		   "\"total\": %llu},\n",
		(unsigned long long)st->bytes_data,
		(unsigned long long)st->bytes_zero,
		(unsigned long long)st->bytes_dup,
		(unsigned long long)st->bytes_proto,
		(unsigned long long)st->bytes_total);
	fprintf(f, "  \"throughput_mibs\": %.1f,\n", st->throughput_mibs);
	fprintf(f, "  \"cpu_s\": {\"source\": %.3f, \"dest\": %.3f},\n",
		st->cpu_s_source, st->cpu_s_dest);
	fprintf(f, "  \"postcopy\": {\"duration_s\": %.3f, \"pages_pushed\": %llu, "
		   "\"pages_requested\": %llu, \"faults\": %llu, "
		   "\"fault_p50_us\": %.1f, \"fault_p99_us\": %.1f, "
		   "\"fault_max_us\": %.1f, \"vcpu_blocked_ms\": %.2f, "
		   "\"recoveries\": %u,\n"
		   "    \"fault_latency_log2_us\": [",
		st->postcopy_s, (unsigned long long)st->pages_pushed,
		(unsigned long long)st->pages_requested,
		(unsigned long long)st->faults, st->fault_p50_us,
		st->fault_p99_us, st->fault_max_us, st->vcpu_blocked_ms,
		st->recoveries);
	for (unsigned int i = 0; i < UT_HIST_BUCKETS; i++)
		fprintf(f, "%s%llu", i ? ", " : "",
			(unsigned long long)st->fault_hist[i]);
	fprintf(f, "]},\n");
	fprintf(f, "  \"rounds\": [");
	for (uint32_t i = 0; i < st->nrounds; i++) {
		const struct mig_round_stats *r = &st->rounds[i];

		fprintf(f, "%s\n    {\"round\": %u, \"pages\": %llu, "
			   "\"data_pages\": %llu, \"zero_pages\": %llu, "
			   "\"dup_pages\": %llu, \"delta_pages\": %llu, "
			   "\"subpages\": %llu, \"same_pages\": %llu, "
			   "\"bytes\": %llu, "
			   "\"duration_s\": %.3f, \"dirty_rate_mibs\": %.1f, "
			   "\"bandwidth_mibs\": %.1f, "
			   "\"predicted_downtime_ms\": %.2f}",
			i ? "," : "", r->round, (unsigned long long)r->pages,
			(unsigned long long)r->data_pages,
			(unsigned long long)r->zero_pages,
			(unsigned long long)r->dup_pages,
			(unsigned long long)r->delta_pages,
			(unsigned long long)r->subpages,
			(unsigned long long)r->same_pages,
			(unsigned long long)r->bytes, r->duration_s,
			r->dirty_rate_mibs, r->bandwidth_mibs,
			r->predicted_downtime_ms);
	}
	fprintf(f, "%s]\n}\n", st->nrounds ? "\n  " : "");
	if (f != stdout && fclose(f)) {
		ret = -errno;
		pr_err("writing %s: %s", path, strerror(-ret));
	}
	return ret;
}
