<?php

declare(strict_types=1);

namespace Phase\Sdk;

use Phase\Sdk\Exception\JobException;
use Phase\Sdk\Exception\NodeException;
use Phase\Sdk\Exception\PhaseException;
use Phase\Sdk\Exception\ProtocolException;
use Phase\Sdk\Exception\TransportException;
use Phase\Sdk\Exception\VerificationException;
use Phase\Sdk\Transport\HttpTransport;
use Phase\Sdk\Transport\LocalTransport;
use Phase\Sdk\Transport\RequestTransportInterface;
use Phase\Sdk\Transport\TransportInterface;

/**
 * Runs jobs on Phase nodes and returns verified results.
 *
 *   $client = new Client(['http://127.0.0.1:8700']);
 *   $result = $client->run(Job::fromFile('hello.wasm')->withInput('Hello, World'));
 *
 * Options: timeout (s, per request, default 30), retries (extra attempts, default 3),
 * backoff_ms (first backoff, default 100), max_backoff_ms (default 2000), trusted_keys (hex
 * node keys to accept; default any), verify (default true), max_response_bytes (default 64 MiB),
 * logger (a PSR-3 logger: attempts at debug, retries and failovers at warning, verification
 * failures at error; never job inputs or outputs).
 */
final class Client
{
    private TransportInterface $transport;
    private float $timeout;
    private int $retries;
    private int $backoffMs;
    private int $maxBackoffMs;
    /** @var list<string> */
    private array $trustedKeys;
    private bool $verify;
    /** @var callable(int):void sleeps for the given microseconds (tests replace it) */
    private $sleep;
    /** @var object|null a Psr\Log\LoggerInterface */
    private ?object $logger;

    /** @param TransportInterface|list<string>|string $nodes a transport, node URLs, or one URL */
    public function __construct(TransportInterface|array|string $nodes, array $options = [])
    {
        $known = ['timeout', 'retries', 'backoff_ms', 'max_backoff_ms', 'trusted_keys', 'verify', 'max_response_bytes', 'sleep', 'logger'];
        if ($unknown = array_diff(array_keys($options), $known)) {
            throw new \InvalidArgumentException('unknown option(s): ' . implode(', ', $unknown));
        }
        $this->transport = $nodes instanceof TransportInterface
            ? $nodes
            : new HttpTransport((array) $nodes, (int) ($options['max_response_bytes'] ?? 64 << 20));
        $this->timeout = (float) ($options['timeout'] ?? 30.0);
        $this->retries = max(0, (int) ($options['retries'] ?? 3));
        $this->backoffMs = max(0, (int) ($options['backoff_ms'] ?? 100));
        $this->maxBackoffMs = max($this->backoffMs, (int) ($options['max_backoff_ms'] ?? 2000));
        $this->trustedKeys = array_map('strtolower', $options['trusted_keys'] ?? []);
        $this->verify = (bool) ($options['verify'] ?? true);
        $this->sleep = $options['sleep'] ?? static fn (int $us) => usleep($us);
        $this->logger = $options['logger'] ?? null;
        // The interface is checked by name: the SDK itself needs no psr/log installed.
        if ($this->logger !== null && !is_a($this->logger, 'Psr\Log\LoggerInterface')) {
            throw new \InvalidArgumentException('logger must implement Psr\Log\LoggerInterface');
        }
    }

    /** Logs to the configured PSR-3 logger, if any. */
    private function log(string $level, string $message, array $context): void
    {
        $this->logger?->log($level, $message, $context);
    }

    /**
     * Runs `$try($endpoint)` on the endpoints in turn until it returns, backing off between
     * attempts; transport, protocol and retryable node errors are retried, others thrown.
     * @template T
     * @param callable(string):T $try
     * @return T
     */
    private function withRetries(array $endpoints, string $what, callable $try): mixed
    {
        $last = null;
        $failedOn = '';
        for ($attempt = 0; $attempt <= $this->retries; $attempt++) {
            $endpoint = $endpoints[$attempt % count($endpoints)];
            if ($attempt > 0) {
                $this->logRetry($what, $failedOn, $last, $attempt + 1, $endpoint);
                ($this->sleep)($this->backoffUs($attempt));
            }
            $this->logAttempt($what, $attempt + 1, $endpoint);
            try {
                return $try($endpoint);
            } catch (NodeException | TransportException | ProtocolException $e) {
                if (!self::retryable($e)) {
                    throw $e;
                }
                $last = $e;
            }
            $failedOn = $endpoint;
        }
        $this->logGivingUp($what, $last);
        throw $last;
    }

    /** Whether another attempt (on the next node) may succeed: transport and protocol errors, and node errors that say so. */
    private static function retryable(PhaseException $e): bool
    {
        return !($e instanceof NodeException) || $e->isRetryable();
    }

    /** Runs jobs with the local `phase` binary instead of a node. */
    public static function local(string $phaseBinary = 'phase', array $options = [], ?string $dataDir = null): self
    {
        return new self(new LocalTransport($phaseBinary, $dataDir), $options);
    }

    /**
     * Runs the job and returns its verified result.
     * @throws JobException the job trapped (its verified result is attached)
     * @throws VerificationException a receipt did not verify or nodes disagreed
     * @throws NodeException|TransportException|ProtocolException after retries
     */
    public function run(Job $job): Result
    {
        // One key for every attempt: a retry after a lost answer returns the first result.
        $key = $job->idempotencyKey() ?? 'sdk-' . bin2hex(random_bytes(16));
        $endpoints = $this->transport->endpoints();
        $k = $job->redundancy();
        if ($k > count($endpoints)) {
            throw new \InvalidArgumentException("redundancy {$k} needs {$k} nodes; the client has " . count($endpoints));
        }
        $results = [];
        $used = [];
        for ($i = 0; $i < $k; $i++) {
            $candidates = array_values(array_diff($endpoints, $used));
            [$endpoint, $result] = $this->runWithRetries($job, $key, $candidates);
            $used[] = $endpoint;
            $results[] = $result;
        }
        try {
            $result = $k === 1 ? $results[0] : $this->agree($results);
        } catch (VerificationException $e) {
            $this->log('error', 'phase: redundant answers failed verification: {error}', ['error' => $e->getMessage()]);
            throw $e;
        }
        if ($result->trap() !== null) {
            throw new JobException($result);
        }
        return $result;
    }

    /**
     * Submits the job without waiting for it (docs/api.md, "Asynchronous jobs") and returns
     * its handle. Retries and fails over as `run` does, under one idempotency key.
     * @throws NodeException|TransportException|ProtocolException after retries
     */
    public function submit(Job $job): JobHandle
    {
        if ($job->redundancy() !== 1) {
            throw new \InvalidArgumentException('submit() runs a job on one node; use run() for redundancy');
        }
        $this->http();
        $key = $job->idempotencyKey() ?? 'sdk-' . bin2hex(random_bytes(16));
        $body = json_encode($job->toRequest($key), JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR);
        return $this->withRetries($this->transport->endpoints(), self::what($job, 'submitting job'), function (string $endpoint) use ($body, $job): JobHandle {
            $headers = ['Content-Type: application/json', 'Prefer: respond-async'];
            [$status, , $text] = $this->nodeRequest($endpoint, 'POST', '/v1/jobs', $headers, $body);
            $data = HttpTransport::decode($endpoint, $status === 202 ? 200 : $status, $text);
            if ($status !== 202 || !is_string($data['job_id'] ?? null)) {
                throw new ProtocolException("node {$endpoint}: HTTP {$status} to an asynchronous job, not 202 with its id");
            }
            $token = is_string($data['cancel_token'] ?? null) ? $data['cancel_token'] : null;
            $location = is_string($data['location'] ?? null) ? $data['location'] : null;
            try {
                return new JobHandle($this, $endpoint, strtolower($data['job_id']), $job->asked(), $token, $location);
            } catch (\InvalidArgumentException $e) {
                throw new ProtocolException("node {$endpoint}: " . $e->getMessage());
            }
        });
    }

    /**
     * Uploads a file's bytes to every node of this client (`PUT /v1/blobs/<sha256>`), so that
     * jobs name it with `Job::withStoredFile()` instead of carrying it, and returns its SHA-256
     * (hex). A node that holds it already answers without reading it.
     * @throws NodeException|TransportException|ProtocolException
     */
    public function putBlob(string $bytes): string
    {
        $sha = hash('sha256', $bytes);
        foreach ($this->http()->endpoints() as $endpoint) {
            [$status, , $text] = $this->nodeRequest($endpoint, 'PUT', "/v1/blobs/{$sha}", ['Content-Type: application/octet-stream'], $bytes);
            $data = HttpTransport::decode($endpoint, $status === 201 ? 200 : $status, $text);
            if (($data['sha256'] ?? null) !== $sha || ($data['size'] ?? null) !== strlen($bytes)) {
                throw new ProtocolException("node {$endpoint}: answered a blob upload with another blob");
            }
        }
        return $sha;
    }

    /** The handle of a job submitted earlier, from its `JobHandle::token()`. */
    public function resume(string $token): JobHandle
    {
        try {
            $t = json_decode($token, true, 16, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new \InvalidArgumentException('not a job handle token: ' . $e->getMessage());
        }
        $strings = static fn ($v) => is_array($v) && array_is_list($v) && array_filter($v, 'is_string') === $v;
        $hex = static fn ($v) => is_string($v) && preg_match('/^[0-9a-f]{64}$/', $v) === 1;
        if (
            !is_array($t) || !is_string($t['node'] ?? null) || !$hex($t['job_id'] ?? null) || !$hex($t['module_sha256'] ?? null)
            || !$hex($t['input_sha256'] ?? null) || !$strings($t['args'] ?? null) || !$strings($t['env'] ?? null)
            || !is_array($t['limits'] ?? null) || array_filter($t['limits'], 'is_int') !== $t['limits']
            || !(($t['cancel_token'] ?? null) === null || is_string($t['cancel_token']))
            || !(($t['location'] ?? null) === null || is_string($t['location']))
            || !(($t['files'] ?? null) === null || is_array($t['files']['mounts'] ?? null))
        ) {
            throw new \InvalidArgumentException('not a job handle token (node, job_id, module_sha256, input_sha256, args, env, limits)');
        }
        $asked = ['module_sha256' => $t['module_sha256'], 'input_sha256' => $t['input_sha256'], 'args' => $t['args'],
            'env' => $t['env'], 'limits' => $t['limits']];
        if (isset($t['files'])) {
            $asked['files'] = $t['files'];
        }
        return new JobHandle($this, $t['node'], $t['job_id'], $asked, $t['cancel_token'] ?? null, $t['location'] ?? null);
    }

    /**
     * One request to a node over the client's HTTP transport: `[status, headers, body]`.
     * @internal for JobHandle
     * @return array{int,array<string,string>,string}
     */
    public function nodeRequest(string $endpoint, string $method, string $path, array $headers = [], ?string $body = null): array
    {
        return $this->http()->request($endpoint, $method, $path, $headers, $body, $this->timeout);
    }

    private function http(): RequestTransportInterface
    {
        if (!$this->transport instanceof RequestTransportInterface) {
            throw new \LogicException('asynchronous jobs need nodes over HTTP (not the local transport)');
        }
        return $this->transport;
    }

    /** The wait before retry number `$attempt` (1 = the first), in µs: exponential backoff with full jitter. */
    private function backoffUs(int $attempt): int
    {
        $cap = min($this->maxBackoffMs, $this->backoffMs * (2 ** ($attempt - 1)));
        return random_int(0, $cap * 1000);
    }

    private function logAttempt(string $what, int $attempt, string $node): void
    {
        $this->log('debug', 'phase: {what}: attempt {attempt} on {node}', ['what' => $what, 'attempt' => $attempt, 'node' => $node]);
    }

    private function logRetry(string $what, string $failedOn, \Throwable $error, int $attempt, string $next): void
    {
        $this->log('warning', 'phase: {what} failed on {failed_node} ({error}); attempt {attempt} on {node}', [
            'what' => $what, 'failed_node' => $failedOn, 'error' => $error->getMessage(), 'attempt' => $attempt, 'node' => $next,
        ]);
    }

    private function logGivingUp(string $what, \Throwable $last): void
    {
        $this->log('warning', 'phase: {what}: giving up after {attempts} attempts: {error}', [
            'what' => $what, 'attempts' => $this->retries + 1, 'error' => $last->getMessage(),
        ]);
    }

    private static function what(Job $job, string $action = 'job'): string
    {
        return "{$action} (module " . substr($job->moduleSha256(), 0, 12) . ')';
    }

    /**
     * Runs many jobs at once across the client's nodes, at most `$concurrency` requests in
     * flight (curl multi; one after the other without ext-curl), and returns under each job's
     * key its verified Result or the exception that ended it (JobException for a trap,
     * NodeException, TransportException, ProtocolException, VerificationException): one
     * failure never throws the others away. Jobs start on the nodes in turn; each keeps one
     * idempotency key for all its attempts, and a retryable failure moves it to the next node
     * after a backoff, as `run` does. `$onResult(key, Result|PhaseException)` is called as
     * each job ends. Jobs with redundancy run through `run`, after the others.
     * @param array<array-key,Job> $jobs
     * @param null|callable(array-key, Result|PhaseException):void $onResult
     * @return array<array-key,Result|PhaseException>
     */
    public function runMany(array $jobs, int $concurrency = 8, ?callable $onResult = null): array
    {
        if ($concurrency < 1) {
            throw new \InvalidArgumentException('concurrency must be at least 1');
        }
        $out = [];
        $done = function (int|string $key, Result|PhaseException $r) use (&$out, $onResult): void {
            $out[$key] = $r;
            if ($onResult !== null) {
                $onResult($key, $r);
            }
        };
        $one = function (int|string $key, Job $job) use ($done): void {
            try {
                $done($key, $this->run($job));
            } catch (PhaseException $e) { // a JobException (trap) too
                $done($key, $e);
            }
        };
        $endpoints = $this->transport->endpoints();
        // [key, job, idempotency key, attempt, node index, not before (microtime(true) seconds)]
        $pending = [];
        $i = 0;
        foreach ($jobs as $key => $job) {
            if (!$job instanceof Job) {
                throw new \InvalidArgumentException("batch entry {$key} is not a Job");
            }
            if ($job->redundancy() === 1) {
                $pending[] = [$key, $job, $job->idempotencyKey() ?? 'sdk-' . bin2hex(random_bytes(16)), 0, $i++ % count($endpoints), 0.0];
            }
        }
        if (!$this->transport instanceof HttpTransport || !$this->transport->usesCurl()) {
            foreach ($pending as [$key, $job]) {
                $one($key, $job);
            }
        } else {
            $this->runAll($pending, $concurrency, $done);
        }
        foreach ($jobs as $key => $job) {
            if ($job->redundancy() !== 1) {
                $one($key, $job);
            }
        }
        // In the order the jobs were given, whatever order they ended in.
        $ordered = [];
        foreach (array_keys($jobs) as $key) {
            $ordered[$key] = $out[$key];
        }
        return $ordered;
    }

    /** The curl multi loop of `runMany`. */
    private function runAll(array $pending, int $concurrency, callable $done): void
    {
        /** @var HttpTransport $http */
        $http = $this->transport;
        $endpoints = $http->endpoints();
        $mh = curl_multi_init();
        $active = [];
        try {
            while ($pending !== [] || $active !== []) {
                $now = microtime(true);
                foreach ($pending as $n => $p) {
                    if (count($active) >= $concurrency) {
                        break;
                    }
                    if ($p[5] > $now) {
                        continue;
                    }
                    unset($pending[$n]);
                    $endpoint = $endpoints[$p[4] % count($endpoints)];
                    $this->logAttempt(self::what($p[1]), $p[3] + 1, $endpoint);
                    $ch = $http->jobHandle($endpoint, $p[1]->toRequest($p[2]), $this->timeout);
                    curl_multi_add_handle($mh, $ch);
                    $active[spl_object_id($ch)] = [$ch, $p, $endpoint];
                }
                if ($active === []) {
                    // Everything waits for its backoff.
                    $next = min(array_map(static fn ($p) => $p[5], $pending));
                    usleep((int) max(0, ($next - microtime(true)) * 1e6));
                    continue;
                }
                curl_multi_exec($mh, $running);
                if (curl_multi_select($mh, 0.05) === -1) {
                    usleep(1000); // select failed at once: do not spin (libcurl's advice)
                }
                while (($info = curl_multi_info_read($mh)) !== false) {
                    $ch = $info['handle'];
                    [, $p, $endpoint] = $active[spl_object_id($ch)];
                    unset($active[spl_object_id($ch)]);
                    $body = (string) curl_multi_getcontent($ch);
                    $status = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
                    $error = $info['result'] === CURLE_OK ? null : curl_strerror($info['result']) . ' ' . curl_error($ch);
                    curl_multi_remove_handle($mh, $ch);
                    try {
                        if ($error !== null) {
                            throw $info['result'] === CURLE_FILESIZE_EXCEEDED
                                ? new ProtocolException("node {$endpoint}: answer larger than {$http->maxResponseBytes()} bytes")
                                : new TransportException("POST {$endpoint}/v1/jobs: {$error}");
                        }
                        $result = $this->verifiedAnswer($p[1]->asked(), HttpTransport::decode($endpoint, $status, $body), $endpoint);
                        $done($p[0], $result->trap() !== null ? new JobException($result) : $result);
                    } catch (NodeException | TransportException | ProtocolException $e) {
                        if (self::retryable($e) && $p[3] < $this->retries) {
                            $this->logRetry(self::what($p[1]), $endpoint, $e, $p[3] + 2, $endpoints[($p[4] + 1) % count($endpoints)]);
                            $pending[] = [$p[0], $p[1], $p[2], $p[3] + 1, $p[4] + 1, microtime(true) + $this->backoffUs($p[3] + 1) / 1e6];
                        } else {
                            if (self::retryable($e)) {
                                $this->logGivingUp(self::what($p[1]), $e);
                            }
                            $done($p[0], $e);
                        }
                    } catch (PhaseException $e) {
                        $done($p[0], $e);
                    }
                }
            }
        } finally {
            foreach ($active as [$ch]) {
                curl_multi_remove_handle($mh, $ch);
            }
            curl_multi_close($mh);
        }
    }

    /** @return array{string,Result} */
    private function runWithRetries(Job $job, string $key, array $endpoints): array
    {
        return $this->withRetries($endpoints, self::what($job), function (string $endpoint) use ($job, $key): array {
            $answer = $this->transport->execute($endpoint, $job->toRequest($key), $this->timeout);
            return [$endpoint, $this->verifiedAnswer($job->asked(), $answer, $endpoint)];
        });
    }

    /**
     * Checks an answer against its receipt and against what was asked (`Job::asked`).
     * @internal for JobHandle
     */
    public function verifiedAnswer(array $asked, array $a, string $endpoint): Result
    {
        try {
            $result = $this->checkAnswer($asked, $a, $endpoint);
        } catch (VerificationException $e) {
            $this->log('error', 'phase: answer from {node} failed verification: {error}', ['node' => $endpoint, 'error' => $e->getMessage()]);
            throw $e;
        }
        $this->log('debug', 'phase: job {job_id} from {node} verified', ['job_id' => $result->jobId(), 'node' => $endpoint]);
        return $result;
    }

    private function checkAnswer(array $asked, array $a, string $endpoint): Result
    {
        $where = "node {$endpoint}";
        foreach (
            ['job_id' => 'is_string', 'stdout' => 'is_string', 'stderr' => 'is_string', 'fuel_used' => 'is_int',
                  'wall_time_us' => 'is_int', 'receipt' => 'is_array'] as $field => $check
        ) {
            if (!array_key_exists($field, $a) || !$check($a[$field])) {
                throw new ProtocolException("{$where}: answer field {$field} is missing or has the wrong type");
            }
        }
        $stdout = base64_decode($a['stdout'], true);
        $stderr = base64_decode($a['stderr'], true);
        if ($stdout === false || $stderr === false) {
            throw new ProtocolException("{$where}: stdout/stderr are not base64");
        }
        $exit = $a['exit_code'] ?? null;
        $trap = $a['trap'] ?? null;
        $receipt = Receipt::fromArray($a['receipt']);
        $left = array_key_exists('files', $a) ? Files::parseLeft($a['files'], $where) : null;
        $guests = array_map(static fn ($m) => $m['guest'], $asked['files']['mounts'] ?? []);
        $files = array_map(static function (array $c) use ($guests): array {
            $f = ['mount' => $guests[$c['mount']] ?? (string)$c['mount']] + $c;
            unset($f['size'], $f['sha256']);
            return $f;
        }, $left ?? []);
        $result = new Result(
            $receipt->jobId,
            $stdout,
            $stderr,
            $exit,
            $trap,
            is_string($a['trap_detail'] ?? null) ? $a['trap_detail'] : null,
            $a['fuel_used'],
            $a['wall_time_us'],
            [$receipt],
            ($a['replayed'] ?? false) === true,
            $files
        );
        if (!$this->verify) {
            return $result;
        }
        $receipt->verify($this->trustedKeys);
        $fail = static function (string $what) use ($where, $receipt): never {
            throw new VerificationException("{$where}: {$what} does not match the signed receipt of job {$receipt->jobId}");
        };
        hash_equals($receipt->moduleSha256, $asked['module_sha256']) || $fail('the module sent');
        hash_equals($receipt->inputSha256, $asked['input_sha256']) || $fail('the input sent');
        hash_equals($receipt->stdoutSha256, hash('sha256', $stdout)) || $fail('the stdout received');
        hash_equals($receipt->stderrSha256, hash('sha256', $stderr)) || $fail('the stderr received');
        ($receipt->exitCode === $exit && $receipt->trap === $trap) || $fail('the exit status received');
        $receipt->fuelUsed === $a['fuel_used'] || $fail('the fuel reported');
        hash_equals($receipt->jobId, strtolower($a['job_id'])) || $fail('the job id reported');
        // An honest executor stops at the output limit it signs; the files it leaves count.
        $outputLimit = $receipt->limits['output_bytes'];
        $output = strlen($stdout) + strlen($stderr) + array_sum(array_map(static fn ($c) => $c['size'] ?? 0, $left ?? []));
        if ($output > $outputLimit) {
            throw new VerificationException(
                "{$where}: the output received ({$output} bytes) is beyond the output limit "
                . "of the signed receipt of job {$receipt->jobId} ({$outputLimit})"
            );
        }
        // A job with files: the files sent, under the file limits signed, are the receipt's;
        // what it left is what the receipt signs, each file's bytes those its entry names.
        $filesDigest = '';
        if (isset($asked['files']) !== ($receipt->fileLimits !== null)) {
            $fail('the set of files sent');
        }
        if ($receipt->fileLimits !== null) {
            foreach ($asked['files']['limits'] ?? [] as $name => $value) {
                ($receipt->fileLimits[$name] ?? null) === $value || $fail("the file limit {$name} asked for");
            }
            $filesDigest = Files::treeDigest($asked['files'], $receipt->fileLimits);
            hash_equals($receipt->filesSha256, bin2hex($filesDigest)) || $fail('the set of files sent');
            $left !== null || $fail('the files left (none received)');
            hash_equals($receipt->leftSha256, bin2hex(Files::changesDigest($left))) || $fail('the files left');
            foreach ($left as $c) {
                if ($c['kind'] === 'file' && (strlen($c['data']) !== $c['size'] || !hash_equals($c['sha256'], hash('sha256', $c['data'])))) {
                    $fail("the bytes received for {$c['path']}");
                }
            }
        } elseif ($left !== null) {
            $fail('the files received (the receipt signs none)');
        }
        foreach ($asked['limits'] as $name => $value) {
            ($receipt->limits[$name] ?? null) === $value || $fail("the limit {$name} asked for");
        }
        $jobId = bin2hex(Canonical::jobId(
            hex2bin($asked['module_sha256']),
            hex2bin($asked['input_sha256']),
            $asked['args'],
            $asked['env'],
            $receipt->limits,
            $filesDigest
        ));
        hash_equals($receipt->jobId, $jobId) || $fail('the job (module, input, args, env, limits, files) sent');
        return $result;
    }

    /** @param list<Result> $results from distinct nodes */
    private function agree(array $results): Result
    {
        $keys = array_map(static fn (Result $r) => $r->receipt()->nodeKey, $results);
        if (count(array_unique($keys)) !== count($keys)) {
            throw new VerificationException('redundant results must come from distinct nodes; got node keys ' . implode(', ', $keys));
        }
        $prints = array_unique(array_map(static fn (Result $r) => $r->receipt()->outcomeFingerprint(), $results));
        if (count($prints) !== 1) {
            throw new VerificationException('nodes disagree on job ' . $results[0]->jobId() . ': ' . implode(' vs ', $prints));
        }
        $first = $results[0];
        return new Result(
            $first->jobId(),
            $first->stdout(),
            $first->stderr(),
            $first->exitCode(),
            $first->trap(),
            $first->trapDetail(),
            $first->fuelUsed(),
            $first->wallTimeUs(),
            array_map(static fn (Result $r) => $r->receipt(), $results),
            $first->replayed(),
            $first->files()
        );
    }
}
