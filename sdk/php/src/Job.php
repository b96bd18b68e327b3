<?php

declare(strict_types=1);

namespace Phase\Sdk;

/**
 * A job to run: module (bytes, file, or the hash of a module already on the node), input,
 * args, env, limits, idempotency key, redundancy and placement. Immutable: every `with…`
 * returns a new Job.
 */
final class Job
{
    private ?string $module = null;
    private string $moduleSha256;
    private string $input = '';
    /** @var list<string> */
    private array $args = [];
    /** @var list<string> */
    private array $env = [];
    /** @var array<string,int> */
    private array $limits = [];
    private ?string $idempotencyKey = null;
    private int $redundancy = 1;
    private ?string $placement = null;
    /** @var array{mounts:list<array{guest:string,entries:list<array<string,mixed>>}>,limits?:array<string,int>}|null */
    private ?array $files = null;

    private function __construct()
    {
    }

    public static function fromBytes(string $wasm): self
    {
        $job = new self();
        $job->module = $wasm;
        $job->moduleSha256 = hash('sha256', $wasm);
        return $job;
    }

    public static function fromFile(string $path): self
    {
        $bytes = @file_get_contents($path);
        if ($bytes === false) {
            throw new \InvalidArgumentException("cannot read module {$path}");
        }
        return self::fromBytes($bytes);
    }

    /** A module uploaded earlier (PUT /v1/modules), named by its SHA-256 (hex). */
    public static function fromHash(string $sha256Hex): self
    {
        if (strlen($sha256Hex) !== 64 || !ctype_xdigit($sha256Hex)) {
            throw new \InvalidArgumentException('module hash must be 64 hex digits');
        }
        $job = new self();
        $job->moduleSha256 = strtolower($sha256Hex);
        return $job;
    }

    public function withInput(string $input): self
    {
        $c = clone $this;
        $c->input = $input;
        return $c;
    }

    /** @param list<string> $args argv[1..] */
    public function withArgs(array $args): self
    {
        foreach ($args as $a) {
            if (!is_string($a)) {
                throw new \InvalidArgumentException('args must be strings');
            }
        }
        $c = clone $this;
        $c->args = array_values($args);
        return $c;
    }

    /** @param array<string,string>|list<string> $env a map, or KEY=VALUE entries (order kept) */
    public function withEnv(array $env): self
    {
        $entries = [];
        foreach ($env as $k => $v) {
            $entries[] = is_int($k) ? (string) $v : "{$k}={$v}";
        }
        $c = clone $this;
        $c->env = $entries;
        return $c;
    }

    /** Unset limits take the node's defaults (docs/formats.md). */
    public function withLimits(?int $fuel = null, ?int $memoryBytes = null, ?int $outputBytes = null, ?int $deadlineMs = null): self
    {
        $c = clone $this;
        foreach (['fuel' => $fuel, 'memory_bytes' => $memoryBytes, 'output_bytes' => $outputBytes, 'deadline_ms' => $deadlineMs] as $k => $v) {
            if ($v !== null) {
                if ($v < 0) {
                    throw new \InvalidArgumentException("limit {$k} must not be negative");
                }
                $c->limits[$k] = $v;
            }
        }
        return $c;
    }

    /**
     * A file the guest finds at `$path` in the preopened directory `$mount` (made on first use,
     * in the order mounts are first named: fd 3, 4, …). Its bytes travel with the job and are
     * part of the job id.
     */
    public function withFile(string $mount, string $path, string $bytes, bool $executable = false): self
    {
        $entry = ['path' => $path, 'data' => base64_encode($bytes)];
        if ($executable) {
            $entry['executable'] = true;
        }
        return $this->withEntries($mount, [$entry]);
    }

    /**
     * A file the nodes hold already, by its SHA-256 (hex) and size: uploaded once with
     * `Client::putBlob()` instead of carried by every job. It is part of the job id as any file.
     */
    public function withStoredFile(string $mount, string $path, string $sha256, int $size, bool $executable = false): self
    {
        if (!preg_match('/^[0-9a-f]{64}$/', $sha256) || $size < 0) {
            throw new \InvalidArgumentException('a stored file is named by its SHA-256 (64 lowercase hex digits) and its size');
        }
        $entry = ['path' => $path, 'sha256' => $sha256, 'size' => $size];
        if ($executable) {
            $entry['executable'] = true;
        }
        return $this->withEntries($mount, [$entry]);
    }

    /** Everything in the local directory `$dir` (files, directories, links) under `$mount`. */
    public function withDirectory(string $dir, string $mount): self
    {
        return $this->withEntries($mount, Files::readDirectory($dir));
    }

    /** @param list<array<string,mixed>> $entries in the request form (docs/api.md) */
    private function withEntries(string $mount, array $entries): self
    {
        $c = clone $this;
        $c->files ??= ['mounts' => []];
        foreach ($c->files['mounts'] as $i => $m) {
            if ($m['guest'] === $mount) {
                $c->files['mounts'][$i]['entries'] = array_merge($m['entries'], $entries);
                return $c;
            }
        }
        $c->files['mounts'][] = ['guest' => $mount, 'entries' => $entries];
        return $c;
    }

    /** Limits of the job's files (docs/formats.md, "Job files"); unset ones take the defaults. */
    public function withFileLimits(?int $bytes = null, ?int $entries = null, ?int $pathBytes = null, ?int $depth = null, ?int $openFiles = null): self
    {
        $c = clone $this;
        $c->files ??= ['mounts' => []];
        foreach (['bytes' => $bytes, 'entries' => $entries, 'path_bytes' => $pathBytes, 'depth' => $depth, 'open_files' => $openFiles] as $k => $v) {
            if ($v !== null) {
                $c->files['limits'][$k] = $v;
            }
        }
        return $c;
    }

    public function withIdempotencyKey(string $key): self
    {
        if ($key === '' || strlen($key) > 256) {
            throw new \InvalidArgumentException('idempotency key must be 1 to 256 bytes');
        }
        $c = clone $this;
        $c->idempotencyKey = $key;
        return $c;
    }

    /** Run on $k distinct nodes and require their receipts to agree. */
    public function withRedundancy(int $k): self
    {
        if ($k < 1) {
            throw new \InvalidArgumentException('redundancy must be at least 1');
        }
        $c = clone $this;
        $c->redundancy = $k;
        return $c;
    }

    /** `local`, `remote` or a peer id: where a node should run the job (peer network). */
    public function withPlacement(string $placement): self
    {
        $c = clone $this;
        $c->placement = $placement;
        return $c;
    }

    public function module(): ?string
    {
        return $this->module;
    }
    public function moduleSha256(): string
    {
        return $this->moduleSha256;
    }
    public function input(): string
    {
        return $this->input;
    }
    /** @return list<string> */
    public function args(): array
    {
        return $this->args;
    }
    /** @return list<string> */
    public function env(): array
    {
        return $this->env;
    }
    /** @return array<string,int> the limits this job asked for */
    public function limits(): array
    {
        return $this->limits;
    }
    public function idempotencyKey(): ?string
    {
        return $this->idempotencyKey;
    }
    public function redundancy(): int
    {
        return $this->redundancy;
    }
    public function placement(): ?string
    {
        return $this->placement;
    }

    /**
     * What a result must be for (the receipt binds all of it): module and input hashes, args,
     * env, the limits asked for.
     * @return array{module_sha256:string,input_sha256:string,args:list<string>,env:list<string>,limits:array<string,int>}
     */
    public function asked(): array
    {
        $asked = ['module_sha256' => $this->moduleSha256, 'input_sha256' => hash('sha256', $this->input),
            'args' => $this->args, 'env' => $this->env, 'limits' => $this->limits];
        if ($this->files !== null) {
            $asked['files'] = $this->files;
        }
        return $asked;
    }

    /** The POST /v1/jobs body, with the given idempotency key. */
    public function toRequest(string $idempotencyKey, bool $inlineModule = true): array
    {
        $req = [];
        if ($inlineModule && $this->module !== null) {
            $req['module'] = base64_encode($this->module);
        } else {
            $req['module_sha256'] = $this->moduleSha256;
        }
        $req['input'] = base64_encode($this->input);
        if ($this->args !== []) {
            $req['args'] = $this->args;
        }
        if ($this->env !== []) {
            $req['env'] = $this->env;
        }
        if ($this->limits !== []) {
            $req['limits'] = $this->limits;
        }
        if ($this->files !== null) {
            $req['files'] = $this->files;
        }
        $req['idempotency_key'] = $idempotencyKey;
        if ($this->placement !== null) {
            $req['placement'] = $this->placement;
        }
        return $req;
    }
}
