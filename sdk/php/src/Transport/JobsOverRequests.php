<?php

declare(strict_types=1);

namespace Phase\Sdk\Transport;

/** `execute` for a transport that can send any request: POST /v1/jobs, the answer decoded. */
trait JobsOverRequests
{
    public function execute(string $endpoint, array $request, float $timeout): array
    {
        $body = json_encode($request, JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR);
        [$status, , $text] = $this->request($endpoint, 'POST', '/v1/jobs', ['Content-Type: application/json'], $body, $timeout);
        return HttpTransport::decode($endpoint, $status, $text);
    }
}
