<?php
header('Location: /landing?from=local');
