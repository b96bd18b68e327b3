<?php

declare(strict_types=1);

namespace Phase\Sdk;

use Phase\Sdk\Exception\JobException;
use Phase\Sdk\Exception\NodeException;
use Phase\Sdk\Exception\ProtocolException;
use Phase\Sdk\Exception\TimeoutException;

/**
 * An asynchronous job on one node (docs/api.md, "Asynchronous jobs"), from `Client::submit`.
 * Its `token()` is a string to keep (e.g. in the application's database) and give to
 * `Client::resume` in a later request: it holds the node, the job id and what was asked
 * (hashes, args, env, limits), so the result verifies as fully as one from `run`.
 */
final class JobHandle
{
    /** @param array{module_sha256:string,input_sha256:string,args:list<string>,env:list<string>,limits:array<string,int>} $asked */
    public function __construct(
        private readonly Client $client,
        public readonly string $node,
        public readonly string $id,
        private readonly array $asked,
        private readonly ?string $cancelToken = null,
        ?string $location = null,
    ) {
        if (!preg_match('/^[0-9a-f]{64}$/', $id)) {
            throw new \InvalidArgumentException('a job id is 64 lowercase hex digits');
        }
        // The node names a job by its id and, when it was placed, where (`.local`, `.<peer>`):
        // only a path of that shape for this id is followed.
        $location ??= "/v1/jobs/{$id}";
        if (!preg_match('#^/v1/jobs/' . $id . '(\.[A-Za-z0-9]{1,128})?$#', $location)) {
            throw new \InvalidArgumentException("a job's location is /v1/jobs/<its id>[.<placement>], not " . json_encode($location));
        }
        $this->location = $location;
    }

    /** Where the node answers for this job: `/v1/jobs/<id>[.<placement>]`. */
    public readonly string $location;

    public function token(): string
    {
        $asked = $this->asked;
        if (isset($asked['files'])) {
            // The files' digests verify the result; their bytes need not be kept.
            $asked['files'] = Files::withoutData($asked['files']);
        }
        $t = ['node' => $this->node, 'job_id' => $this->id, 'location' => $this->location] + $asked + ['cancel_token' => $this->cancelToken];
        return json_encode($t, JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR);
    }

    /** The node's status object: `status` is queued, running, cancelling, done, failed or cancelled. */
    public function status(): array
    {
        [$status, , $body] = $this->client->nodeRequest($this->node, 'GET', $this->location);
        $data = \Phase\Sdk\Transport\HttpTransport::decode($this->node, $status, $body);
        if (!is_string($data['status'] ?? null)) {
            throw new ProtocolException("node {$this->node}: job status without a status");
        }
        return $data;
    }

    /**
     * The verified result once the job is done, null while it is not.
     * @throws JobException it trapped (the verified result is attached)
     * @throws NodeException it failed (the error a synchronous run would have had) or was cancelled
     */
    public function result(): ?Result
    {
        $s = $this->status();
        switch ($s['status']) {
            case 'done':
                if (!is_array($s['result'] ?? null)) {
                    throw new ProtocolException("node {$this->node}: a done job without its result");
                }
                $result = $this->client->verifiedAnswer($this->asked, $s['result'], $this->node);
                if ($result->trap() !== null) {
                    throw new JobException($result);
                }
                return $result;
            case 'failed':
                $e = is_array($s['error'] ?? null) ? $s['error'] : [];
                throw new NodeException((int) ($e['status'] ?? 500), (string) ($e['code'] ?? 'failed'), (string) ($e['message'] ?? 'no message'), $this->node);
            case 'cancelled':
                throw new NodeException(409, 'cancelled', "job {$this->id} was cancelled; no receipt was signed", $this->node);
            default:
                return null;
        }
    }

    /**
     * Polls until the job is done (at most `$timeout` seconds) and returns its verified result.
     * @throws TimeoutException the job had not ended in time (it goes on)
     */
    public function wait(float $timeout = 30.0, float $interval = 0.2): Result
    {
        $giveUp = microtime(true) + $timeout;
        while (true) {
            $r = $this->result();
            if ($r !== null) {
                return $r;
            }
            if (microtime(true) >= $giveUp) {
                throw new TimeoutException("job {$this->id} on {$this->node} did not end within {$timeout}s");
            }
            usleep((int) (min($interval, max(0.0, $giveUp - microtime(true))) * 1e6));
        }
    }

    /**
     * Asks the node to stop the job; returns the status it answered: cancelled or cancelling,
     * or queued/running while other submitters of the same job still hold it (each submission
     * gets a token of its own; the job stops once all have cancelled). A handle without a
     * token (the job had ended, or too many submitters hold it) gets NodeException 403
     * `forbidden`.
     */
    public function cancel(): string
    {
        $token = rawurlencode($this->cancelToken ?? '');
        [$status, , $body] = $this->client->nodeRequest($this->node, 'DELETE', "{$this->location}?token={$token}");
        // 202: it is running and stops at its next fuel slice (status "cancelling").
        return (string) (\Phase\Sdk\Transport\HttpTransport::decode($this->node, $status === 202 ? 200 : $status, $body)['status'] ?? '');
    }

    /**
     * The output written so far from byte `$offset` of `stdout` or `stderr` (not verified: the
     * receipt signs the final bytes, which `result()` checks).
     */
    public function output(string $stream = 'stdout', int $offset = 0): string
    {
        $path = "{$this->location}/output?stream=" . rawurlencode($stream) . "&offset={$offset}";
        [$status, , $body] = $this->client->nodeRequest($this->node, 'GET', $path);
        if ($status !== 200) {
            \Phase\Sdk\Transport\HttpTransport::decode($this->node, $status, $body);
        }
        return $body;
    }
}
