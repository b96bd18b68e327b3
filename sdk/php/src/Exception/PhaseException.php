<?php

declare(strict_types=1);

namespace Phase\Sdk\Exception;

/** Every error the SDK raises implements this. */
interface PhaseException extends \Throwable
{
}
