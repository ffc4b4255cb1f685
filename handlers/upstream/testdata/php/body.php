<?php
// The body as php reads it, against the length it was told.
echo strlen(file_get_contents('php://input')), " ", $_SERVER["CONTENT_LENGTH"] ?? "-";
