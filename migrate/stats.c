// SPDX-License-Identifier: LGPL-2.1-or-later
/* Migration statistics as JSON. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LOG_PREFIX "migrate"
#include "migrate/internal.h"

/* A string that came from the peer: printable, but maybe with quotes. */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

static void write_thp(FILE *f, const struct mig_thp_stats *t)
{
	if (!t->tried)
		return;
	fprintf(f, "  \"thp\": {\"shmem_enabled\": ");
	json_str(f, t->shmem_enabled);
	fprintf(f, ", \"ranges\": %u, \"collapsed\": %u, \"failed\": %u, "
		   "\"sparse\": %u, \"misaligned_regions\": %u, "
		   "\"budget_spent\": %s, \"collapse_ms\": "
		   "%.1f, \"shmem_bytes\": %llu, \"huge_bytes\": %lld",
		t->ranges, t->collapsed, t->failed, t->sparse, t->misaligned,
		t->cut ? "true" : "false", t->ms,
		(unsigned long long)t->shmem_bytes, (long long)t->huge_bytes);
	if (t->huge_bytes >= 0 && t->shmem_bytes)
		fprintf(f, ", \"huge_share\": %.4f",
			(double)t->huge_bytes / t->shmem_bytes);
	if (t->failed) {
		fprintf(f, ", \"first_refusal\": ");
		json_str(f, strerror(-t->first_error));
	}
	if (t->why[0]) {
		fprintf(f, ", \"why\": ");
		json_str(f, t->why);
	}
	fprintf(f, "},\n");
}

static void write_placement(FILE *f, const struct mig_place_stats *p)
{
	if (!p->policy[0])
		return;
	fprintf(f, "  \"numa\": {\"policy\": ");
	json_str(f, p->policy);
	fprintf(f, ", \"note\": ");
	json_str(f, p->note);
	if (p->hotness[0]) {
		fprintf(f, ", \"hotness\": ");
		json_str(f, p->hotness);
		fprintf(f, ", \"read_not_written\": %llu",
			(unsigned long long)p->read_only_hot);
	}
	fprintf(f, ", \"checked\": %s", p->checked ? "true" : "false");
	if (p->checked)
		fprintf(f, ", \"pages_present\": %llu, \"pages_as_planned\": "
			   "%llu, \"pages_absent\": %llu, \"as_planned\": %.6f",
			(unsigned long long)p->pages_present,
			(unsigned long long)p->pages_as_planned,
			(unsigned long long)p->pages_absent,
			p->pages_present ? (double)p->pages_as_planned /
					   p->pages_present : 0.0);
	if (p->heat_samples)
		fprintf(f, ", \"heat_samples\": %u, \"hot_chunks\": %llu, "
			   "\"hot_chunks_on_top_tier\": %llu", p->heat_samples,
			(unsigned long long)p->hot_chunks,
			(unsigned long long)p->hot_on_top);
	if (p->revisions)
		fprintf(f, ", \"plan_revisions\": %u, \"revised_chunks\": %llu, "
			   "\"revised_bytes\": %llu", p->revisions,
			(unsigned long long)p->revised_chunks,
			(unsigned long long)p->revised_bytes);
	if (p->promoted_chunks)
		fprintf(f, ", \"postcopy_promoted_chunks\": %llu",
			(unsigned long long)p->promoted_chunks);
	fprintf(f, ",\n    \"nodes\": [");
	for (uint32_t i = 0; i < p->nr_nodes && i < GM_MAX_NODES; i++) {
		uint32_t n = p->node_id[i] % GM_MAX_NODES;

		fprintf(f, "%s{\"node\": %u, \"planned_bytes\": %llu", i ? ", " : "",
			n, (unsigned long long)p->planned[n]);
		if (p->checked)
			fprintf(f, ", \"placed_bytes\": %llu",
				(unsigned long long)p->placed[n]);
		fprintf(f, "}");
	}
	fprintf(f, "]},\n");
}

/* Written to PATH.tmp and renamed over PATH once complete, so that a full
 * or failing filesystem leaves no truncated file that looks like one. */
static void write_ksm(FILE *f, const struct mig_ksm_stats *k)
{
	fprintf(f, "  \"ksm\": {\"run\": %d, \"merge_across_nodes\": %d, "
		   "\"anonymous_ram\": %s, \"hints\": %s, \"hinted_pages\": %llu, "
		   "\"source_ksm_pages\": %llu, "
		   "\"advised_ranges\": %llu, \"advised_bytes\": %llu, "
		   "\"pages_sharing\": %lld, \"vmm_pss_kib\": %lld},\n",
		k->run, k->merge_across_nodes, k->anon ? "true" : "false",
		k->hints ? "true" : "false",
		(unsigned long long)k->hinted_pages,
		(unsigned long long)k->source_pages,
		(unsigned long long)k->advised_ranges,
		(unsigned long long)k->advised_bytes,
		(long long)k->pages_sharing, (long long)k->vmm_pss_kib);
}

int mig_stats_write_json(const struct mig_stats *st, const char *role,
			 const char *path)
{
	bool out = !strcmp(path, "-");
	char tmp[4096];
	FILE *f;
	int ret = 0;

	if (!out && snprintf(tmp, sizeof(tmp), "%s.tmp", path) >=
		    (int)sizeof(tmp)) {
		pr_err("the statistics were not written: path too long");
		return -ENAMETOOLONG;
	}
	f = out ? stdout : fopen(tmp, "w");
	if (!f) {
		ret = -errno;
		pr_err("the statistics were not written to %s: %s", path,
		       strerror(-ret));
		return ret;
	}
	fprintf(f, "{\n  \"role\": \"%s\",\n  \"outcome\": \"%s\",\n"
		   "  \"mode\": \"%s\",\n", role, st->outcome, st->mode);
	if (st->placement[0])
		fprintf(f, "  \"placement\": \"%s\",\n", st->placement);
	if (st->fault_priority[0])
		fprintf(f, "  \"fault_priority\": \"%s\",\n",
			st->fault_priority);
	if (st->hugepages_added)
		fprintf(f, "  \"hugepages_added\": %llu,\n",
			(unsigned long long)st->hugepages_added);
	if (st->ksm_told)
		fprintf(f, "  \"ksm_source_pages\": %llu,\n",
			(unsigned long long)st->ksm_source_pages);
	if (st->unit_bytes)
		fprintf(f, "  \"unit_bytes\": %llu,\n",
			(unsigned long long)st->unit_bytes);
	fprintf(f, "  \"total_s\": %.3f,\n  \"setup_s\": %.3f,\n"
		   "  \"downtime_ms\": %.2f,\n  \"state_load_ms\": %.2f,\n",
		st->total_s, st->setup_s, st->downtime_ms, st->state_load_ms);
	if (!strcmp(role, "source") && !strcmp(st->mode, "postcopy"))
		fprintf(f, "  \"switchover\": {\"pause_ms\": %.2f, "
			   "\"harvest_ms\": %.2f, \"markers_ms\": %.2f, "
			   "\"discard_ms\": %.2f, \"state_save_ms\": %.2f, "
			   "\"state_send_ms\": %.2f, \"state_bytes\": %llu},\n",
			st->pause_ms, st->harvest_ms, st->markers_ms,
			st->discard_ms, st->state_save_ms, st->state_send_ms,
			(unsigned long long)st->state_bytes);
	else if (!strcmp(role, "source"))
		fprintf(f, "  \"switchover\": {\"pause_ms\": %.2f, "
			   "\"harvest_ms\": %.2f, \"state_save_ms\": %.2f, "
			   "\"state_bytes\": %llu},\n", st->pause_ms,
			st->harvest_ms, st->state_save_ms,
			(unsigned long long)st->state_bytes);
	else
		fprintf(f, "  \"switchover\": {\"state_bytes\": %llu, "
			   "\"drain_ms\": %.2f, \"load_ms\": %.2f, "
			   "\"resume_ms\": %.2f},\n",
			(unsigned long long)st->state_bytes, st->drain_ms,
			st->load_ms, st->resume_ms);
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
		   "\"faults_before_resume\": %llu, "
		   "\"fault_p50_us\": %.1f, \"fault_p99_us\": %.1f, "
		   "\"fault_max_us\": %.1f, \"vcpu_blocked_ms\": %.2f, "
		   "\"recoveries\": %u, \"push_wait_ms\": %.2f,\n"
		   "    \"fault_latency_log2_us\": [",
		st->postcopy_s, (unsigned long long)st->pages_pushed,
		(unsigned long long)st->pages_requested,
		(unsigned long long)st->faults,
		(unsigned long long)st->faults_before_resume, st->fault_p50_us,
		st->fault_p99_us, st->fault_max_us, st->vcpu_blocked_ms,
		st->recoveries, st->push_wait_ms);
	for (unsigned int i = 0; i < UT_HIST_BUCKETS; i++)
		fprintf(f, "%s%llu", i ? ", " : "",
			(unsigned long long)st->fault_hist[i]);
	fprintf(f, "]},\n");
	write_placement(f, &st->place);
	if (st->ksm.reported)
		write_ksm(f, &st->ksm);
	write_thp(f, &st->thp);
	if (st->early.looked && st->early.error)
		fprintf(f, "  \"early_look\": {\"at_s\": %.3f, \"error\": "
			   "\"%s\", \"decision\": \"precopy\"},\n",
			st->early.at_s, strerror(-st->early.error));
	else if (st->early.looked)
		fprintf(f, "  \"early_look\": {\"at_s\": %.3f, "
			   "\"dirty_bytes\": %llu, \"sent_bytes\": %llu, "
			   "\"ratio\": %.3f, \"decision\": \"%s\"},\n",
			st->early.at_s,
			(unsigned long long)st->early.dirty_bytes,
			(unsigned long long)st->early.sent_bytes,
			st->early.sent_bytes ? (double)st->early.dirty_bytes /
					       (double)st->early.sent_bytes : 0,
			st->early.cut ? "postcopy" : "precopy");
	fprintf(f, "  \"rounds\": [");
	for (uint32_t i = 0; i < st->nrounds; i++) {
		const struct mig_round_stats *r = &st->rounds[i];
		char ack[32] = "null";

		if (r->acked)
			snprintf(ack, sizeof(ack), "%.2f", r->ack_wait_ms);
		fprintf(f, "%s\n    {\"round\": %u, \"pages\": %llu, "
			   "\"data_pages\": %llu, \"zero_pages\": %llu, "
			   "\"dup_pages\": %llu, \"delta_pages\": %llu, "
			   "\"subpages\": %llu, \"same_pages\": %llu, "
			   "\"bytes\": %llu, "
			   "\"duration_s\": %.3f, \"dirty_rate_mibs\": %.1f, "
			   "\"bandwidth_mibs\": %.1f, "
			   "\"predicted_downtime_ms\": %.2f, "
			   "\"ack_wait_ms\": %s}",
			i ? "," : "", r->round, (unsigned long long)r->pages,
			(unsigned long long)r->data_pages,
			(unsigned long long)r->zero_pages,
			(unsigned long long)r->dup_pages,
			(unsigned long long)r->delta_pages,
			(unsigned long long)r->subpages,
			(unsigned long long)r->same_pages,
			(unsigned long long)r->bytes, r->duration_s,
			r->dirty_rate_mibs, r->bandwidth_mibs,
			r->predicted_downtime_ms, ack);
	}
	fprintf(f, "%s]\n}\n", st->nrounds ? "\n  " : "");
	if (out)
		return fflush(f) ? -errno : 0;
	if (fflush(f))
		ret = -errno;
	else if (ferror(f))
		ret = -EIO;
	if (fclose(f) && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret) {
		unlink(tmp);
		pr_err("the statistics were not written to %s: %s", path,
		       strerror(-ret));
	}
	return ret;
}
