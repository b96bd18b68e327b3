<?php

declare(strict_types=1);

namespace Phase\Sdk\Exception;

/**
 * The node answered with an error (docs/api.md): `status` is the HTTP status, `errorCode` the
 * node's machine-readable code (e.g. `invalid_module`, `busy`). 429 and 5xx are retried on
 * another node; other 4xx are the request's fault and are not.
 */
final class NodeException extends \RuntimeException implements PhaseException
{
    public function __construct(
        public readonly int $status,
        public readonly string $errorCode,
        string $message,
        public readonly string $endpoint = '',
    ) {
        parent::__construct("node {$endpoint}: HTTP {$status} {$errorCode}: {$message}");
    }

    public function isRetryable(): bool
    {
        return $this->status === 429 || $this->status >= 500;
    }
}
