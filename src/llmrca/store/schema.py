"""The store's schema as an ordered list of migrations.

Migration ``n`` moves a store from schema version ``n - 1`` to ``n``. They run in order, each in its
own transaction, when a store is opened for writing; an old store upgrades in place. Never edit a
migration that has shipped: add a new one.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "core tables: incidents, interactions, logs, model versions, training data, rejects", [
        """CREATE TABLE store_meta (
            key VARCHAR PRIMARY KEY,
            value VARCHAR NOT NULL)""",
        """CREATE TABLE incidents (
            incident_id VARCHAR PRIMARY KEY,
            title VARCHAR NOT NULL,
            detected_at TIMESTAMP,
            detection_source VARCHAR,
            category VARCHAR,
            severity VARCHAR,
            status VARCHAR,
            summary VARCHAR,
            deployed_model_version VARCHAR,
            personal_fields JSON,
            metadata JSON,
            content_hash VARCHAR NOT NULL,
            revision INTEGER NOT NULL DEFAULT 1,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
        """CREATE TABLE incident_history (
            incident_id VARCHAR NOT NULL,
            revision INTEGER NOT NULL,
            record JSON NOT NULL,
            content_hash VARCHAR NOT NULL,
            replaced_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (incident_id, revision))""",
        """CREATE TABLE interactions (
            interaction_id VARCHAR PRIMARY KEY,
            incident_id VARCHAR NOT NULL,
            source_format VARCHAR NOT NULL,
            source_file VARCHAR,
            source_line INTEGER,
            session_hash VARCHAR,
            user_hash VARCHAR,
            ts TIMESTAMP,
            model_version VARCHAR,
            system_prompt VARCHAR,
            messages JSON NOT NULL,
            output VARCHAR,
            guardrail JSON,
            metadata JSON,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
        """CREATE TABLE log_events (
            event_id VARCHAR PRIMARY KEY,
            incident_id VARCHAR NOT NULL,
            stream VARCHAR NOT NULL,
            source_file VARCHAR,
            source_line BIGINT,
            ts TIMESTAMP NOT NULL,
            level VARCHAR,
            event_type VARCHAR,
            session_hash VARCHAR,
            user_hash VARCHAR,
            model_version VARCHAR,
            prompt VARCHAR,
            output VARCHAR,
            guardrail_rule VARCHAR,
            guardrail_decision VARCHAR,
            guardrail_score DOUBLE,
            attributes JSON,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
        """CREATE TABLE model_versions (
            name VARCHAR PRIMARY KEY,
            source VARCHAR NOT NULL,
            revision VARCHAR,
            parent VARCHAR,
            deployed_from TIMESTAMP,
            deployed_to TIMESTAMP,
            fingerprint VARCHAR,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
        """CREATE TABLE training_examples (
            model_version VARCHAR NOT NULL,
            example_id VARCHAR NOT NULL,
            source_file VARCHAR,
            source_line BIGINT,
            messages JSON,
            prompt VARCHAR,
            completion VARCHAR,
            metadata JSON,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (model_version, example_id))""",
        """CREATE TABLE ingest_runs (
            run_id VARCHAR PRIMARY KEY,
            incident_id VARCHAR,
            path VARCHAR NOT NULL,
            skip_invalid BOOLEAN NOT NULL,
            counts JSON,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
        """CREATE TABLE ingest_rejects (
            reject_id VARCHAR PRIMARY KEY,
            run_id VARCHAR NOT NULL,
            incident_id VARCHAR,
            file VARCHAR NOT NULL,
            line BIGINT,
            field VARCHAR,
            reason VARCHAR NOT NULL,
            raw VARCHAR,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
    ]),
    (2, "model registry: notes and the loading options a version was registered with", [
        "ALTER TABLE model_versions ADD COLUMN notes VARCHAR",
        "ALTER TABLE model_versions ADD COLUMN allow_pickle BOOLEAN DEFAULT false",
    ]),
    (3, "replay results: runs, samples, run membership, teacher-forced scores, judgements", [
        # One row per replay call's parameters; run_id is a content hash of them, so re-running
        # (or resuming) the same replay finds the same row.
        """CREATE TABLE replay_runs (
            run_id VARCHAR PRIMARY KEY,
            incident_id VARCHAR NOT NULL,
            versions JSON NOT NULL,
            parameters JSON NOT NULL,
            seed BIGINT NOT NULL,
            backend VARCHAR NOT NULL,
            package_version VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            counts JSON,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
        # Content-addressed generations: sample_id = hash(model fingerprint, engine, rendered
        # prompt, decoding parameters, seed). A sample can serve several runs (see below).
        """CREATE TABLE replay_samples (
            sample_id VARCHAR PRIMARY KEY,
            model_version VARCHAR NOT NULL,
            model_fingerprint VARCHAR NOT NULL,
            engine VARCHAR NOT NULL,
            prompt_hash VARCHAR NOT NULL,
            prompt_text VARCHAR NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            decoding JSON NOT NULL,
            seed BIGINT NOT NULL,
            output VARCHAR NOT NULL,
            token_ids JSON NOT NULL,
            token_logprobs JSON NOT NULL,
            total_logprob DOUBLE NOT NULL,
            finish_reason VARCHAR NOT NULL,
            warnings JSON,
            run_id VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
        # Which sample answers which (run, interaction, variant, version, sample index).
        """CREATE TABLE replay_run_samples (
            run_id VARCHAR NOT NULL,
            incident_id VARCHAR NOT NULL,
            interaction_id VARCHAR NOT NULL,
            variant VARCHAR NOT NULL DEFAULT 'original',
            model_version VARCHAR NOT NULL,
            sample_index INTEGER NOT NULL,
            seed BIGINT NOT NULL,
            sample_id VARCHAR NOT NULL,
            warnings JSON,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (run_id, interaction_id, variant, model_version, sample_index))""",
        # Teacher-forced log-probabilities of a given output (score_id = hash of fingerprint,
        # engine, rendered prompt and output tokens).
        """CREATE TABLE replay_scores (
            score_id VARCHAR PRIMARY KEY,
            incident_id VARCHAR,
            interaction_id VARCHAR,
            model_version VARCHAR NOT NULL,
            model_fingerprint VARCHAR NOT NULL,
            engine VARCHAR NOT NULL,
            prompt_hash VARCHAR NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            output VARCHAR NOT NULL,
            token_ids JSON NOT NULL,
            token_logprobs JSON NOT NULL,
            argmax_ids JSON NOT NULL,
            total_logprob DOUBLE NOT NULL,
            warnings JSON,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
        """CREATE TABLE judgements (
            judgement_id VARCHAR PRIMARY KEY,
            sample_id VARCHAR NOT NULL,
            judge VARCHAR NOT NULL,
            judge_config_hash VARCHAR NOT NULL,
            label VARCHAR NOT NULL,
            score DOUBLE,
            details JSON,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
    ]),
    (4, "one call one interaction: provider and trace ids, role, sources, merge conflicts", [
        # How another source recognises the same call: the provider's response id, else the
        # OTel (trace id, span id). parent_span_id keeps the span tree for later reading.
        "ALTER TABLE interactions ADD COLUMN response_id VARCHAR",
        "ALTER TABLE interactions ADD COLUMN trace_id VARCHAR",
        "ALTER TABLE interactions ADD COLUMN span_id VARCHAR",
        "ALTER TABLE interactions ADD COLUMN parent_span_id VARCHAR",
        # offending (the incident) or context (traffic around it). Interactions of stores made
        # before this migration were all the incident's own conversations.
        "ALTER TABLE interactions ADD COLUMN role VARCHAR DEFAULT 'offending'",
        "UPDATE interactions SET role = 'offending'",
        # Why a source marked the call (guardrail block, content filter, detector hit).
        "ALTER TABLE interactions ADD COLUMN flags JSON",
        # Tool definitions offered to the model, and what happened around the call (tool
        # executions, guardrail checks).
        "ALTER TABLE interactions ADD COLUMN tools JSON",
        "ALTER TABLE interactions ADD COLUMN context JSON",
        # Every source that reported the call ({format, file, line}), and the fields on which
        # a later source disagreed with what was stored ({field, stored, other, source}).
        "ALTER TABLE interactions ADD COLUMN sources JSON",
        "ALTER TABLE interactions ADD COLUMN conflicts JSON",
        """UPDATE interactions SET sources = json_array(json_object(
            'format', source_format, 'file', source_file, 'line', source_line))""",
        # Which interactions are the incident: a selection (ids or filters) from incident.yaml
        # or `llmrca incidents focus`, applied again to interactions ingested later.
        "ALTER TABLE incidents ADD COLUMN offending_selection JSON",
    ]),
    (5, "log events: no primary-key index on event_id (ingest dedupes by anti-join)", [
        # Keeping the ART index of a million 32-hex-digit ids took more time than the rest of a
        # large ingest; the insert now skips ids the incident already has instead. The ids are
        # unchanged, so rows ingested before still dedupe. DuckDB cannot drop a primary key in
        # place, hence the copy.
        """CREATE TABLE log_events_v5 (
            event_id VARCHAR NOT NULL,
            incident_id VARCHAR NOT NULL,
            stream VARCHAR NOT NULL,
            source_file VARCHAR,
            source_line BIGINT,
            ts TIMESTAMP NOT NULL,
            level VARCHAR,
            event_type VARCHAR,
            session_hash VARCHAR,
            user_hash VARCHAR,
            model_version VARCHAR,
            prompt VARCHAR,
            output VARCHAR,
            guardrail_rule VARCHAR,
            guardrail_decision VARCHAR,
            guardrail_score DOUBLE,
            attributes JSON,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
        "INSERT INTO log_events_v5 SELECT * FROM log_events",
        "DROP TABLE log_events",
        "ALTER TABLE log_events_v5 RENAME TO log_events",
    ]),
    (6, "judges: cached model-judge scores, and judge validations against human labels", [
        # A model judge's raw scores of one input (guard log-probs, class probabilities).
        # cache_key = hash(judge fingerprint: model files + template + labels, input text), so a
        # warm re-judge needs no forward pass; thresholds apply on the way out.
        """CREATE TABLE judge_cache (
            cache_key VARCHAR PRIMARY KEY,
            judge_kind VARCHAR NOT NULL,
            judge_fingerprint VARCHAR NOT NULL,
            value JSON NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
        # A judge (name + configuration hash) checked against human labels of an incident's
        # samples: the 2x2 counts that sensitivity, specificity and corrected rates come from.
        """CREATE TABLE judge_validations (
            validation_id VARCHAR PRIMARY KEY,
            incident_id VARCHAR NOT NULL,
            judge VARCHAR NOT NULL,
            judge_config_hash VARCHAR NOT NULL,
            true_positives INTEGER NOT NULL,
            false_negatives INTEGER NOT NULL,
            true_negatives INTEGER NOT NULL,
            false_positives INTEGER NOT NULL,
            n_offending INTEGER NOT NULL,
            labels_sha256 VARCHAR NOT NULL,
            details JSON,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
    ]),
    (7, "fix verification: verification records, and the incidents promoted to release gates", [
        # One candidate version checked against one incident (and the benign regression set):
        # thresholds, the measured rates with the interval bounds the verdict used, the verdict,
        # and the replay runs the numbers come from. A suite run writes one row per promoted
        # incident, all with its suite_id. verification_id is a content hash of the record.
        """CREATE TABLE verifications (
            verification_id VARCHAR PRIMARY KEY,
            suite_id VARCHAR,
            incident_id VARCHAR NOT NULL,
            candidate VARCHAR NOT NULL,
            baseline VARCHAR,
            max_rate DOUBLE NOT NULL,
            margin DOUBLE NOT NULL,
            confidence DOUBLE NOT NULL,
            samples INTEGER NOT NULL,
            benign_samples INTEGER NOT NULL,
            temperature DOUBLE NOT NULL,
            seed BIGINT NOT NULL,
            incident_prompts INTEGER NOT NULL,
            incident_k INTEGER NOT NULL,
            incident_n INTEGER NOT NULL,
            incident_rate DOUBLE,
            incident_low DOUBLE NOT NULL,
            incident_high DOUBLE NOT NULL,
            baseline_incident_k INTEGER,
            baseline_incident_n INTEGER,
            baseline_incident_rate DOUBLE,
            baseline_incident_high DOUBLE,
            incident_pass BOOLEAN NOT NULL,
            benign_set VARCHAR NOT NULL,
            benign_prompts INTEGER NOT NULL,
            refusal_k INTEGER NOT NULL,
            refusal_n INTEGER NOT NULL,
            refusal_rate DOUBLE,
            refusal_low DOUBLE NOT NULL,
            refusal_high DOUBLE NOT NULL,
            baseline_refusal_k INTEGER,
            baseline_refusal_n INTEGER,
            baseline_refusal_rate DOUBLE,
            baseline_refusal_low DOUBLE,
            baseline_refusal_high DOUBLE,
            refusal_difference DOUBLE,
            refusal_difference_low DOUBLE,
            refusal_difference_high DOUBLE NOT NULL,
            benign_pass BOOLEAN NOT NULL,
            verdict VARCHAR NOT NULL,
            reasons JSON NOT NULL,
            interval_method VARCHAR NOT NULL,
            run_ids JSON NOT NULL,
            judges JSON NOT NULL,
            package_version VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
        # Incidents promoted to the regression suite (`llmrca incidents promote`), each with
        # the reproduction-rate threshold a candidate must stay under.
        """CREATE TABLE regression_suite (
            incident_id VARCHAR PRIMARY KEY,
            max_rate DOUBLE NOT NULL,
            note VARCHAR,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
    ]),
    (8, "log events: the id scheme of the store (md5 in new stores, sha256 where logs exist)", [
        # An event id is a content id of (incident, stream, line text), compared on re-ingest. It
        # was the first 32 hex digits of a sha256; md5 gives 32 hex digits in half the time and
        # needs no cryptographic strength here. Stores that already hold log rows keep sha256 so
        # that those rows still dedupe; the ingest reads the scheme from store_meta.
        """INSERT INTO store_meta SELECT 'log_event_id',
            CASE WHEN EXISTS (SELECT 1 FROM log_events) THEN 'sha256' ELSE 'md5' END""",
    ]),
    (9, "model internals: cached hidden states; probe, direction, patching, weight-diff results", [
        # One prompt's residual stream at one position, every hidden-state index, for one model:
        # content-addressed by (model fingerprint, engine, prompt id, position), so asking again
        # costs no forward pass. ``data`` is base64 of float32 [n_states, d] (exact round trip).
        """CREATE TABLE activation_cache (
            activation_id VARCHAR PRIMARY KEY,
            model_fingerprint VARCHAR NOT NULL,
            engine VARCHAR NOT NULL,
            prompt_hash VARCHAR NOT NULL,
            position VARCHAR NOT NULL,
            n_states INTEGER NOT NULL,
            width INTEGER NOT NULL,
            data VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
        # One analysis result (kind: probes, directions, causal, patching, weight_diff), keyed by
        # a content id of its kind, versions with fingerprints, parameters and seed.
        """CREATE TABLE internals_results (
            result_id VARCHAR PRIMARY KEY,
            kind VARCHAR NOT NULL,
            incident_id VARCHAR,
            versions JSON NOT NULL,
            fingerprints JSON NOT NULL,
            parameters JSON NOT NULL,
            seed BIGINT,
            tables JSON NOT NULL,
            info JSON,
            package_version VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
    ]),
    (10, "attribution: per-interaction segment and token attributions, and attribution runs", [
        # One attribution of one interaction's target to its prompt's segments (or tokens) under
        # one version: attribution_id is a content id of model fingerprint, engine, rendered
        # prompt, segments, method, baseline, target tokens and parameters, so a re-run computes
        # only what is missing (llmrca.store.cache.compute_missing).
        """CREATE TABLE attributions (
            attribution_id VARCHAR PRIMARY KEY,
            incident_id VARCHAR NOT NULL,
            interaction_id VARCHAR NOT NULL,
            model_version VARCHAR NOT NULL,
            model_fingerprint VARCHAR NOT NULL,
            engine VARCHAR NOT NULL,
            method VARCHAR NOT NULL,
            baseline VARCHAR NOT NULL,
            target VARCHAR NOT NULL,
            prompt_hash VARCHAR NOT NULL,
            target_text VARCHAR NOT NULL,
            contrast_text VARCHAR,
            parameters JSON NOT NULL,
            segments JSON NOT NULL,
            scores JSON NOT NULL,
            full_score DOUBLE,
            empty_score DOUBLE,
            details JSON,
            package_version VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
        # An attribution run: which attributions it holds, and its faithfulness check (the
        # replay run ids the rates come from are inside).
        """CREATE TABLE attribution_runs (
            run_id VARCHAR PRIMARY KEY,
            incident_id VARCHAR NOT NULL,
            model_version VARCHAR NOT NULL,
            parameters JSON NOT NULL,
            attribution_ids JSON NOT NULL,
            faithfulness JSON,
            info JSON NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
    ]),
    (11, "training-data search: per-signal scores, search runs, leave-k-out checks", [
        # One signal's scores of every training example of a version against an incident's
        # offending interactions: signal_id is a content id of the signal, the version's
        # fingerprint, the training data, the queries and the signal's parameters and seed, so a
        # re-run (or another search sharing the signal) computes nothing.
        """CREATE TABLE training_search_signals (
            signal_id VARCHAR PRIMARY KEY,
            incident_id VARCHAR NOT NULL,
            model_version VARCHAR NOT NULL,
            model_fingerprint VARCHAR NOT NULL,
            signal VARCHAR NOT NULL,
            parameters JSON NOT NULL,
            seed BIGINT,
            example_ids JSON NOT NULL,
            query_ids JSON NOT NULL,
            scores JSON NOT NULL,
            per_query JSON NOT NULL,
            seconds DOUBLE NOT NULL,
            info JSON,
            package_version VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
        # A search: which signal rows it combined, and how.
        """CREATE TABLE training_search_runs (
            run_id VARCHAR PRIMARY KEY,
            incident_id VARCHAR NOT NULL,
            model_version VARCHAR NOT NULL,
            model_fingerprint VARCHAR NOT NULL,
            signals JSON NOT NULL,
            signal_ids JSON NOT NULL,
            parameters JSON NOT NULL,
            seed BIGINT,
            info JSON NOT NULL,
            package_version VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
        # A leave-k-out check: the parent fine-tuned again without the removed examples, the
        # incident replayed on both; keyed by the parent's fingerprint, the removed ids, the
        # recipe, the training data and the replay's parameters.
        """CREATE TABLE leave_out_results (
            leave_out_id VARCHAR PRIMARY KEY,
            incident_id VARCHAR NOT NULL,
            model_version VARCHAR NOT NULL,
            parent VARCHAR NOT NULL,
            parent_fingerprint VARCHAR NOT NULL,
            removed JSON NOT NULL,
            recipe JSON NOT NULL,
            retrained_version VARCHAR NOT NULL,
            retrained_fingerprint VARCHAR NOT NULL,
            replay_run_id VARCHAR NOT NULL,
            result JSON NOT NULL,
            parameters JSON NOT NULL,
            seed BIGINT,
            package_version VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
    ]),
    (12, "hypotheses: one row per tested hypothesis of an investigation run", [
        # One hypothesis of one run: result_id is a content id of (run id, hypothesis name); the
        # run id hashes every test id and the verdict rule, a test id hashes the kind, its
        # parameters and every input (versions with fingerprints, samples, seed, judges,
        # interactions), so a warm re-run reads its verdicts back without loading a model.
        """CREATE TABLE hypothesis_results (
            result_id VARCHAR PRIMARY KEY,
            run_id VARCHAR NOT NULL,
            incident_id VARCHAR NOT NULL,
            name VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            test_id VARCHAR NOT NULL,
            parameters JSON NOT NULL,
            applicable BOOLEAN NOT NULL,
            verdict VARCHAR NOT NULL,
            effect DOUBLE,
            effect_low DOUBLE,
            effect_high DOUBLE,
            p_value DOUBLE,
            adjusted_p DOUBLE,
            min_effect DOUBLE NOT NULL,
            alpha DOUBLE NOT NULL,
            rank INTEGER,
            summary VARCHAR NOT NULL,
            finding JSON,
            evidence JSON NOT NULL,
            inputs JSON NOT NULL,
            method VARCHAR,
            package_version VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
    ]),
    (13, "logs in place: registered Parquet log sources, and the view all_log_events", [
        # Production logs that stay where they are (local Parquet, a glob, an s3:// URL): where
        # they are, each file's row count and schema digest when registered (a moved or
        # rewritten file is named before a query reads it), and the scan's counts. Each source
        # has a view (view_name) computing the log_events columns from the files.
        """CREATE TABLE log_sources (
            source_id VARCHAR PRIMARY KEY,
            incident_id VARCHAR NOT NULL,
            stream VARCHAR NOT NULL,
            location VARCHAR NOT NULL,
            format VARCHAR NOT NULL,
            files JSON NOT NULL,
            file_rows JSON NOT NULL,
            file_schemas JSON NOT NULL,
            columns JSON NOT NULL,
            schema_fingerprint VARCHAR NOT NULL,
            rows BIGINT NOT NULL,
            rejected BIGINT NOT NULL,
            repeats BIGINT NOT NULL,
            personal_fields JSON NOT NULL,
            view_name VARCHAR NOT NULL,
            registered_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
        # What every log query reads: the copied log_events, and (once registered) the views of
        # the logs in place (llmrca.store.log_sources rebuilds it on each registration).
        """CREATE VIEW all_log_events AS SELECT event_id, incident_id, stream, source_file,
            source_line, ts, level, event_type, session_hash, user_hash, model_version, prompt,
            output, guardrail_rule, guardrail_decision, guardrail_score, attributes, created_at
            FROM log_events""",
    ]),
]

LATEST_VERSION = MIGRATIONS[-1][0]
